package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// ControllersConfig configures the controllers benchmark.
type ControllersConfig struct {
	// Binary is the skiff binary to run (default: this executable).
	Binary string
	// Nodes is the number of simulated nodes.
	Nodes int
	// Deployments and Replicas size the workload: Deployments ×
	// Replicas pods.
	Deployments, Replicas int
	// Steady is how long CPU and memory are measured after all pods run.
	Steady time.Duration
	// ClusterCIDR is the server's --cluster-cidr (default: 10.42.0.0/16
	// up to 256 nodes, else the smallest 10.0.0.0/N with a /24 per node).
	ClusterCIDR string
	// AgentQPS is the simulated nodes' --kube-api-qps (0: the agent's
	// default for the number of nodes).
	AgentQPS float64
	// Timeout bounds each wait (nodes Ready, all pods Running).
	Timeout time.Duration
	// ProfileDir, when set, makes the server serve pprof on loopback and
	// the benchmark save CPU profiles of the server over consecutive
	// ProfileInterval windows while pods start (cpu-000.pprof, ...)
	// and a heap profile once all run (heap.pprof) there.
	ProfileDir string
	// ProfileInterval is the length of each CPU profile (default 30 s).
	ProfileInterval time.Duration
	// Progress receives progress lines.
	Progress io.Writer
}

const controllersNamespace = "bench-controllers"

// Controllers starts `skiff server` (embedded etcd, controller manager,
// scheduler) and `skiff agent --runtime=sim` as child processes, creates
// Deployments × Replicas pods across the simulated nodes and measures the
// time from the first Deployment's create until every pod is Running,
// then the server's CPU and memory in the steady state that follows.
func Controllers(ctx context.Context, cfg ControllersConfig) (Result, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1000
	}
	if cfg.Deployments <= 0 {
		cfg.Deployments = 300
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 100
	}
	if cfg.Steady <= 0 {
		cfg.Steady = 30 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Minute
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.ClusterCIDR == "" {
		var err error
		if cfg.ClusterCIDR, err = clusterCIDRFor(cfg.Nodes); err != nil {
			return Result{}, err
		}
	}
	bin, err := selfBinary(cfg.Binary)
	if err != nil {
		return Result{}, err
	}
	dir, err := os.MkdirTemp("", "skiff-bench-controllers-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(cfg.Progress, "starting skiff server (cluster CIDR %s)...\n", cfg.ClusterCIDR)
	serverArgs := []string{"--cluster-cidr", cfg.ClusterCIDR, "--node-cidr-mask-size", "24"}
	profileURL := ""
	if cfg.ProfileDir != "" {
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return Result{}, err
		}
		port, err := freePort()
		if err != nil {
			return Result{}, err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		serverArgs = append(serverArgs, "--profile-listen", addr)
		profileURL = "http://" + addr + "/debug/pprof/"
	}
	srv, kubeconfig, err := startServerChild(ctx, bin, dir, serverArgs...)
	if err != nil {
		return Result{}, err
	}
	defer srv.stop(15 * time.Second)
	fmt.Fprintf(cfg.Progress, "starting %d simulated nodes...\n", cfg.Nodes)
	agentArgs := []string{"agent", "--runtime=sim", "--nodes", strconv.Itoa(cfg.Nodes), "--kubeconfig", kubeconfig,
		"--data-dir", filepath.Join(dir, "agent"), "--log-level", "warn"}
	if cfg.AgentQPS > 0 {
		agentArgs = append(agentArgs, "--kube-api-qps", strconv.FormatFloat(cfg.AgentQPS, 'f', -1, 64))
	}
	agent, err := startChild("agent", filepath.Join(dir, "agent.log"), bin, agentArgs...)
	if err != nil {
		return Result{}, err
	}
	// The agent stops first: its nodes' last status writes need the server.
	defer agent.stop(15 * time.Second)

	client, err := benchClient(kubeconfig, true)
	if err != nil {
		return Result{}, err
	}
	if err := waitNodesReady(ctx, client, cfg, agent); err != nil {
		return Result{}, err
	}
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: controllersNamespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return Result{}, fmt.Errorf("create namespace: %w", err)
	}

	total := cfg.Deployments * cfg.Replicas
	var running, bound atomic.Int64
	allRunning := make(chan struct{})
	var closed atomic.Bool
	isRunning := func(obj any) bool {
		p, ok := obj.(*corev1.Pod)
		return ok && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
	}
	isBound := func(obj any) bool {
		p, ok := obj.(*corev1.Pod)
		return ok && p.Spec.NodeName != "" && p.DeletionTimestamp == nil
	}
	count := func(delta int64) {
		if running.Add(delta) >= int64(total) && closed.CompareAndSwap(false, true) {
			close(allRunning)
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(controllersNamespace))
	podInf := factory.Core().V1().Pods().Informer()
	if _, err := podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if isBound(obj) {
				bound.Add(1)
			}
			if isRunning(obj) {
				count(1)
			}
		},
		UpdateFunc: func(old, cur any) {
			bound.Add(int64(b2i(isBound(cur)) - b2i(isBound(old))))
			switch was, is := isRunning(old), isRunning(cur); {
			case !was && is:
				count(1)
			case was && !is:
				count(-1)
			}
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if isBound(obj) {
				bound.Add(-1)
			}
			if isRunning(obj) {
				count(-1)
			}
		},
	}); err != nil {
		return Result{}, err
	}
	infCtx, stopInf := context.WithCancel(ctx)
	defer stopInf()
	factory.Start(infCtx.Done())
	if !cache.WaitForCacheSync(infCtx.Done(), podInf.HasSynced) {
		return Result{}, errors.New("pod informer did not sync")
	}

	fmt.Fprintf(cfg.Progress, "creating %d Deployments × %d replicas (%d pods)...\n", cfg.Deployments, cfg.Replicas, total)
	start := time.Now()
	profCtx, stopProf := context.WithCancel(ctx)
	defer stopProf()
	profDone := make(chan struct{})
	go func() {
		defer close(profDone)
		if profileURL != "" {
			collectCPUProfiles(profCtx, profileURL, cfg.ProfileDir, cfg.ProfileInterval, cfg.Progress)
		}
	}()
	if _, _, err := parallel(cfg.Deployments, 8, func(i int) error {
		_, err := client.AppsV1().Deployments(controllersNamespace).Create(ctx, benchDeployment(i, cfg.Replicas), metav1.CreateOptions{})
		return err
	}); err != nil {
		return Result{}, fmt.Errorf("create deployments: %w", err)
	}
	fmt.Fprintf(cfg.Progress, "created %d Deployments in %.1f s\n", cfg.Deployments, time.Since(start).Seconds())
	timeout := time.After(cfg.Timeout)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var lastBound, lastRunning int64
wait:
	for {
		select {
		case <-allRunning:
			break wait
		case <-tick.C:
			b, r := bound.Load(), running.Load()
			fmt.Fprintf(cfg.Progress, "%6.0f s: %d/%d pods bound (+%d in 10 s), %d Running (+%d)\n",
				time.Since(start).Seconds(), b, total, b-lastBound, r, r-lastRunning)
			lastBound, lastRunning = b, r
			if srv.exited() || agent.exited() {
				return Result{}, fmt.Errorf("a child exited; server log:\n%s\nagent log:\n%s", srv.tail(), agent.tail())
			}
		case <-timeout:
			return Result{}, fmt.Errorf("only %d of %d pods Running after %s", running.Load(), total, cfg.Timeout)
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	allRunningAfter := time.Since(start)
	fmt.Fprintf(cfg.Progress, "all %d pods Running after %.1f s; measuring the steady state for %s...\n", total, allRunningAfter.Seconds(), cfg.Steady)
	stopInf() // the benchmark's own watch is no load the cluster would have
	stopProf()
	<-profDone
	if profileURL != "" {
		if err := saveProfile(ctx, profileURL+"heap", filepath.Join(cfg.ProfileDir, "heap.pprof")); err != nil {
			fmt.Fprintf(cfg.Progress, "heap profile: %v\n", err)
		}
	}

	cpu, err := steadyCPU(ctx, cfg.Steady, srv.pid(), agent.pid())
	if err != nil {
		return Result{}, err
	}
	srvRSS, err := rssMiB(srv.pid())
	if err != nil {
		return Result{}, err
	}
	agentRSS, err := rssMiB(agent.pid())
	if err != nil {
		return Result{}, err
	}
	return Result{Scenario: "controllers", Figures: map[string]Figure{
		"all_running_s":      {allRunningAfter.Seconds(), "s"},
		"cp_rss_mib":         {srvRSS, "MiB"},
		"cp_cpu_percent":     {cpu[0], "% of one core"},
		"agent_rss_mib":      {agentRSS, "MiB"},
		"agent_cpu_percent":  {cpu[1], "% of one core"},
		"pods_running_per_s": {float64(total) / allRunningAfter.Seconds(), "pods/s"},
		"nodes":              {float64(cfg.Nodes), "nodes"},
		"pods":               {float64(total), "pods"},
		"deployments":        {float64(cfg.Deployments), "deployments"},
		"replicas":           {float64(cfg.Replicas), "replicas"},
		"steady_window_s":    {cfg.Steady.Seconds(), "s"},
	}, Notes: []string{fmt.Sprintf("skiff server (embedded etcd, controller manager, scheduler; cluster CIDR %s) and skiff agent --runtime=sim "+
		"--nodes %d as child processes. all_running_s: first Deployment create to all %d pods Running; cp_* and agent_*: "+
		"CPU ((utime+stime) over %s after all pods run) and VmRSS at its end, of the server and of the agent process.",
		cfg.ClusterCIDR, cfg.Nodes, total, cfg.Steady)}}, nil
}

// clusterCIDRFor returns a cluster CIDR with a /24 for each of n nodes.
func clusterCIDRFor(n int) (string, error) {
	if n <= 256 {
		return "10.42.0.0/16", nil
	}
	b := bits.Len(uint(n - 1)) // 2^b ≥ n
	if b > 16 {
		return "", fmt.Errorf("at most 65536 nodes, not %d", n)
	}
	return fmt.Sprintf("10.0.0.0/%d", 24-b), nil
}

// waitNodesReady waits until cfg.Nodes nodes report Ready.
func waitNodesReady(ctx context.Context, client kubernetes.Interface, cfg ControllersConfig, agent *child) error {
	start := time.Now()
	deadline := start.Add(cfg.Timeout)
	var last time.Time
	for {
		nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		ready := 0
		if err == nil {
			for _, n := range nodes.Items {
				for _, c := range n.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						ready++
					}
				}
			}
		}
		if ready >= cfg.Nodes {
			fmt.Fprintf(cfg.Progress, "%d nodes Ready after %.1f s\n", ready, time.Since(start).Seconds())
			return nil
		}
		if agent.exited() {
			return fmt.Errorf("the agent exited:\n%s", agent.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d nodes Ready after %s (last error: %v)", ready, cfg.Nodes, cfg.Timeout, err)
		}
		if time.Since(last) > 5*time.Second {
			fmt.Fprintf(cfg.Progress, "%d/%d nodes Ready\n", ready, cfg.Nodes)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// steadyCPU returns the CPU use of each pid over d, in percent of one core.
func steadyCPU(ctx context.Context, d time.Duration, pids ...int) ([]float64, error) {
	before := make([]float64, len(pids))
	for i, pid := range pids {
		var err error
		if before[i], err = cpuSeconds(pid); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	wall := time.Since(start).Seconds()
	out := make([]float64, len(pids))
	for i, pid := range pids {
		after, err := cpuSeconds(pid)
		if err != nil {
			return nil, err
		}
		out[i] = (after - before[i]) / wall * 100
	}
	return out, nil
}

func benchDeployment(i, replicas int) *appsv1.Deployment {
	labels := map[string]string{"app": fmt.Sprintf("bench-%03d", i)}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%03d", i)},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(replicas)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "skiff.local/busybox:latest",
					Command: []string{"sleep", "3600"}}}}}},
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// collectCPUProfiles saves CPU profiles of the process serving pprof at
// base over consecutive windows of interval into dir until ctx ends (the
// window in progress then is lost).
func collectCPUProfiles(ctx context.Context, base, dir string, interval time.Duration, progress io.Writer) {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	for i := 0; ctx.Err() == nil; i++ {
		path := filepath.Join(dir, fmt.Sprintf("cpu-%03d.pprof", i))
		url := fmt.Sprintf("%sprofile?seconds=%d", base, int(interval.Seconds()))
		if err := saveProfile(ctx, url, path); err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(progress, "cpu profile %s: %v\n", path, err)
			}
			_ = os.Remove(path)
			return
		}
		fmt.Fprintf(progress, "saved %s\n", path)
	}
}

// saveProfile GETs url into path.
func saveProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
