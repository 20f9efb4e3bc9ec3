package cli

import (
	"context"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/bench"
)

// Commit is the git commit skiff was built from, set with -ldflags.
var Commit = "unknown"

func benchGroup() *group {
	return &group{name: "bench", description: `
Run a benchmark scenario and print its figures as a table, or as one JSON
object with --json.`,
		subs: []subcommand{
			{name: "api", summary: "API server: pod creates, gets, lists and watch delivery with concurrent clients", run: benchScenario(benchAPI)},
			{name: "controllers", summary: "Deployments rolled out on simulated nodes by the controllers and scheduler", run: benchScenario(benchControllers)},
			{name: "failover", summary: "controller-manager leader failover between servers sharing an external etcd", run: benchScenario(benchFailover)},
			{name: "podstart", summary: "pod start latency on one real node (containerd)", run: benchScenario(benchPodStart)},
			{name: "proxy", summary: "service proxy: programming its nftables tables in a private network namespace", run: benchScenario(benchProxy)},
			{name: "scheduler", summary: "scheduler throughput, as upstream's scheduler_perf SchedulingBasic", run: benchScenario(benchScheduler)},
			{name: "startup", summary: "skiff server's time to ready and its idle memory", run: benchScenario(benchStartup)},
		},
		example: `  skiff bench api --pods 10000 --json
  skiff bench scheduler --help`}
}

// benchScenario runs a scenario and writes its result (as JSON with
// --json).
func benchScenario(run func(context.Context, *env, []string) (bench.Result, error)) func(context.Context, *env, []string) error {
	return func(ctx context.Context, e *env, args []string) error {
		res, err := run(ctx, e, args)
		if err != nil {
			return err
		}
		res.Commit = Commit
		asJSON := false
		for _, a := range args {
			if a == "--json" || a == "-json" {
				asJSON = true
			}
		}
		return res.Write(e.stdout, asJSON)
	}
}

func benchAPI(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.APIConfig
	var asJSON bool
	fs := newFlagSet(e, "bench api", `
Start a control plane with embedded etcd in a temporary directory and measure
the API server: pod creates, gets, full lists and watch delivery, with
concurrent clients. Prints a table, or one JSON object with --json.`,
		`  skiff bench api --pods 10000 --json`)
	fs.IntVar(&cfg.Pods, "pods", 10000, "number of pods to create, get and list")
	fs.IntVar(&cfg.Workers, "clients", 32, "number of concurrent clients")
	fs.BoolVar(&cfg.Protobuf, "protobuf", false, "use the protobuf wire format instead of JSON")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.API(ctx, cfg)
}

func benchStartup(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.StartupConfig
	var asJSON bool
	fs := newFlagSet(e, "bench startup", `
Start 'skiff server' as a new process and measure the time from process start
until /readyz answers 200 (on a fresh data dir and again on the same data
dir), and the server's resident memory after it idles.`,
		`  skiff bench startup --json`)
	fs.DurationVar(&cfg.Idle, "idle", 5*time.Second, "how long the server idles before its memory is read")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	return bench.Startup(ctx, cfg)
}

func benchScheduler(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.SchedulerConfig
	var asJSON bool
	fs := newFlagSet(e, "bench scheduler", `
Measure the scheduler like upstream's scheduler_perf SchedulingBasic: start an
API server with embedded etcd in a temporary directory (no scheduler, no
controllers, as scheduler_perf), or use the control plane --kubeconfig points
at (its node lifecycle controller may taint the benchmark's nodes, which renew
no Leases, after its grace period); create --nodes Node objects
(4 CPU, 32Gi, 110 pods, Ready, in 3 zones); run a scheduler in this process;
create --pods pods through the API with concurrent clients and wait until all
are bound. Prints pods/s (first create to last binding), p50/p99 latency (pod
create to binding) and the scheduler's memory; one JSON object with --json.

Workloads:
  basic         pods requesting 100m CPU and 500Mi
  spread        topology spread: maxSkew 1 over zones (hard) and hostnames (soft)
  antiaffinity  required pod anti-affinity on hostname within groups of min(nodes, pods) pods
  preemption    fill each node with 4 low-priority 1-CPU pods, then create --pods
                high-priority 1-CPU pods that must preempt; the benchmark finishes
                the victims' graceful deletion (no agent runs)`,
		`  skiff bench scheduler --nodes 5000 --pods 10000 --json
  skiff bench scheduler --workload preemption --nodes 500 --pods 1000`)
	fs.IntVar(&cfg.Nodes, "nodes", 1000, "number of Node objects")
	fs.IntVar(&cfg.Pods, "pods", 10000, "number of measured pods (preemption: high-priority pods, at most 4 per node)")
	fs.StringVar(&cfg.Workload, "workload", bench.WorkloadBasic, "workload: "+strings.Join(bench.Workloads, ", "))
	fs.IntVar(&cfg.Clients, "clients", 32, "number of concurrent clients creating nodes and pods")
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "use the running control plane of this kubeconfig instead of starting one")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "how long to wait for all pods to be bound")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.Scheduler(ctx, cfg)
}

func benchFailover(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.FailoverConfig
	var asJSON bool
	fs := newFlagSet(e, "bench failover", `
Start an external etcd (Debian's etcd on PATH) and --servers 'skiff server'
processes that share it, each with its own data dir, port and CA. Each round
kills the controller-manager leader (the holder of the Lease
kube-system/skiff-controller-manager) with SIGKILL, creates a ReplicaSet
through a surviving server and measures the time until the Lease has a new
holder (lease_handover_ms) and until the ReplicaSet's pod exists, created by
the new leader's controllers (failover_ms); then it restarts the killed
server. Prints the median and maximum over --rounds.

A dead leader's Lease expires --lease-duration after its last renewal, so
failover takes at least that long. A shorter lease costs more Lease writes
(one per retry period per component) and makes a slow leader (a renewal
that takes longer than --renew-deadline) give up leadership sooner.`,
		`  skiff bench failover --json
  skiff bench failover --servers 2 --rounds 10 --lease-duration 4s --renew-deadline 3s --retry-period 500ms`)
	fs.IntVar(&cfg.Servers, "servers", 3, "number of server processes (at least 2)")
	fs.IntVar(&cfg.Rounds, "rounds", 5, "number of times the leader is killed")
	fs.DurationVar(&cfg.LeaseDuration, "lease-duration", bench.FailoverLeaseDuration, "the servers' --leader-elect-lease-duration")
	fs.DurationVar(&cfg.RenewDeadline, "renew-deadline", bench.FailoverRenewDeadline, "the servers' --leader-elect-renew-deadline")
	fs.DurationVar(&cfg.RetryPeriod, "retry-period", bench.FailoverRetryPeriod, "the servers' --leader-elect-retry-period")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "how long to wait for a server to start and for a failover")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.Failover(ctx, cfg)
}

func benchControllers(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.ControllersConfig
	var asJSON bool
	fs := newFlagSet(e, "bench controllers", `
Start 'skiff server' (embedded etcd, controllers, scheduler) and
'skiff agent --runtime=sim --nodes N' as child processes in a temporary
directory, wait until the nodes are Ready, create --deployments Deployments
of --replicas pods each, and measure the time from the first create until
every pod is Running (all_running_s); then the server's CPU (cp_cpu_percent,
of one core) and RSS (cp_rss_mib) over --steady, and the agent's. Progress
goes to stderr; one JSON object with --json.`,
		`  skiff bench controllers --json
  skiff bench controllers --nodes 100 --deployments 30 --replicas 100`)
	fs.IntVar(&cfg.Nodes, "nodes", 1000, "number of simulated nodes")
	fs.IntVar(&cfg.Deployments, "deployments", 300, "number of Deployments")
	fs.IntVar(&cfg.Replicas, "replicas", 100, "replicas of each Deployment")
	fs.DurationVar(&cfg.Steady, "steady", 30*time.Second, "how long CPU is measured once all pods run")
	fs.StringVar(&cfg.ClusterCIDR, "cluster-cidr", "", "the server's --cluster-cidr (default: 10.42.0.0/16 up to 256 nodes, else 10.0.0.0/N with a /24 per node)")
	fs.Float64Var(&cfg.AgentQPS, "agent-qps", 0, "the agent's --kube-api-qps (0: its default for the number of nodes)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "how long to wait for the nodes and for all pods to run")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "save CPU profiles of the server (pprof, consecutive --profile-interval windows while pods start) and its heap once all run into this directory")
	fs.DurationVar(&cfg.ProfileInterval, "profile-interval", 30*time.Second, "length of each CPU profile with --profile-dir")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.Controllers(ctx, cfg)
}

func benchPodStart(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.PodStartConfig
	var asJSON bool
	fs := newFlagSet(e, "bench podstart", `
Run one real node: create a network namespace, run containerd in it, import
the busybox image and start 'skiff server' and 'skiff agent --runtime=cri' as
child processes. Create --pods pods (busybox, sleep 3600, imagePullPolicy
Never) one at a time, then --pods more at once, and measure the time from
each create until a watch sees the pod Running (p50_ms/p99_ms, burst_p50_ms/
burst_p99_ms), and the agent's memory and CPU. Needs root, containerd and
runc ('make deps'). Progress goes to stderr; one JSON object with --json.`,
		`  skiff bench podstart --pods 30 --json`)
	fs.IntVar(&cfg.Pods, "pods", 30, "pods created one at a time, and again at once")
	fs.DurationVar(&cfg.Timeout, "timeout", 2*time.Minute, "how long to wait for the node and for each pod to run")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.PodStart(ctx, cfg)
}
