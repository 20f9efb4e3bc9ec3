package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/internal/scheduler"
	"github.com/skiff-sh/skiff/internal/scheduler/plugins"
	"github.com/skiff-sh/skiff/internal/server"
)

// Scheduler benchmark workloads.
const (
	WorkloadBasic        = "basic"
	WorkloadSpread       = "spread"
	WorkloadAntiAffinity = "antiaffinity"
	WorkloadPreemption   = "preemption"
)

// Workloads lists the scheduler benchmark's workloads.
var Workloads = []string{WorkloadBasic, WorkloadSpread, WorkloadAntiAffinity, WorkloadPreemption}

// benchSchedulerName is the profile the benchmark's scheduler serves and
// its pods name, so that no other scheduler of the cluster (with
// --kubeconfig) competes for them.
const benchSchedulerName = "skiff-bench-scheduler"

// Shape of the simulated nodes and pods (upstream scheduler_perf's
// node-default and pod-default).
const (
	nodeCPU       = "4"
	nodeMemory    = "32Gi"
	nodePods      = "110"
	podCPU        = "100m"
	podMemory     = "500Mi"
	zones         = 3
	victimsPerNod = 4 // preemption: low-priority pods of 1 CPU that fill a node
	lowPriority   = 100
	highPriority  = 10000
)

// SchedulerConfig configures the scheduler benchmark.
type SchedulerConfig struct {
	// Nodes is the number of Node objects created.
	Nodes int
	// Pods is the number of measured pods (preemption: high-priority pods).
	Pods int
	// Workload is basic, spread, antiaffinity or preemption.
	Workload string
	// Clients is the number of concurrent clients creating objects.
	Clients int
	// Kubeconfig points at a running control plane; empty starts one in a
	// temporary directory.
	Kubeconfig string
	// Timeout bounds the wait for all measured pods to be bound.
	Timeout time.Duration
	// Progress receives progress lines.
	Progress io.Writer
}

// schedRun is the state of one benchmark run.
type schedRun struct {
	cfg    SchedulerConfig
	client kubernetes.Interface
	ns     string
	run    string

	mu      sync.Mutex
	index   map[string]int // measured pod name → index
	sent    []time.Time    // create request sent
	bound   []time.Time    // OnBound called
	nodeOf  []string       // node each measured pod was bound to
	sched   []time.Duration
	nBound  int
	allDone chan struct{}
	// fill counts bound low-priority pods of the preemption workload.
	fillBound int
	fillDone  chan struct{}
	fillWant  int
}

// Scheduler measures the scheduler like upstream's scheduler_perf
// SchedulingBasic: N nodes as plain Node objects, M pods created through
// the API by concurrent clients, pods/s from the first create to the last
// binding and the latency of each pod from its create to its binding.
func Scheduler(ctx context.Context, cfg SchedulerConfig) (Result, error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1000
	}
	if cfg.Pods <= 0 {
		cfg.Pods = 10000
	}
	if cfg.Workload == "" {
		cfg.Workload = WorkloadBasic
	}
	if !slices.Contains(Workloads, cfg.Workload) {
		return Result{}, fmt.Errorf("unknown workload %q (have: %s)", cfg.Workload, strings.Join(Workloads, ", "))
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if cfg.Workload == WorkloadPreemption && cfg.Pods > cfg.Nodes*victimsPerNod {
		return Result{}, fmt.Errorf("preemption: at most %d pods on %d nodes (each preempts one of %d low-priority pods per node)",
			cfg.Nodes*victimsPerNod, cfg.Nodes, victimsPerNod)
	}

	var rc *rest.Config
	if cfg.Kubeconfig != "" {
		var err error
		if rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
			return Result{}, fmt.Errorf("load kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	} else {
		fmt.Fprintf(cfg.Progress, "starting a control plane (API server only: no scheduler, no controllers)...\n")
		var stop func()
		var err error
		// As upstream's scheduler_perf: an API server and the scheduler
		// under test only. Controllers would add load of their own, and
		// node lifecycle would taint the benchmark's nodes, which have no
		// agent renewing their Leases, once its grace period passes.
		if rc, stop, err = startServer(ctx, withoutScheduler, withoutControllers); err != nil {
			return Result{}, err
		}
		defer stop()
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = -1, 0
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return Result{}, fmt.Errorf("client: %w", err)
	}
	r := &schedRun{cfg: cfg, client: client, run: rand.String(5),
		index: map[string]int{}, sent: make([]time.Time, cfg.Pods), bound: make([]time.Time, cfg.Pods),
		nodeOf: make([]string, cfg.Pods), allDone: make(chan struct{}), fillDone: make(chan struct{})}
	r.ns = "bench-sched-" + r.run
	for i := range cfg.Pods {
		r.index[r.podName(i)] = i
	}
	defer r.cleanup()
	return r.measure(ctx, rc)
}

func withoutScheduler(c *server.Config) { c.DisableScheduler = true }

func withoutControllers(c *server.Config) { c.DisableControllerManager = true }

func (r *schedRun) podName(i int) string  { return fmt.Sprintf("pod-%06d", i) }
func (r *schedRun) nodeName(i int) string { return fmt.Sprintf("bench-%s-%05d", r.run, i) }

func (r *schedRun) measure(ctx context.Context, rc *rest.Config) (Result, error) {
	cfg := r.cfg
	if err := r.setup(ctx); err != nil {
		return Result{}, err
	}

	// The scheduler runs in this process so that OnBound reports each
	// binding as it is written.
	sched, err := scheduler.New(scheduler.Config{RestConfig: rc,
		File:   &scheduler.File{Profiles: []plugins.ProfileConfig{{SchedulerName: benchSchedulerName}}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnBound: r.onBound})
	if err != nil {
		return Result{}, err
	}
	sctx, stopSched := context.WithCancel(ctx)
	defer stopSched()
	schedErr := make(chan error, 1)
	// Only this goroutine holds the scheduler once it is ready, so that
	// stopping it frees its memory.
	go func(s *scheduler.Scheduler) { schedErr <- s.Run(sctx) }(sched)
	select {
	case <-sched.Ready():
	case err := <-schedErr:
		return Result{}, fmt.Errorf("scheduler: %w", err)
	}

	var victims *victimFinisher
	if cfg.Workload == WorkloadPreemption {
		if err := r.fill(ctx); err != nil {
			return Result{}, err
		}
		vctx, stopVictims := context.WithCancel(ctx)
		defer stopVictims()
		if victims, err = r.finishVictims(vctx); err != nil {
			return Result{}, err
		}
	}

	fmt.Fprintf(cfg.Progress, "creating %d %s pods with %d clients...\n", cfg.Pods, cfg.Workload, cfg.Clients)
	start := time.Now()
	_, _, err = parallel(cfg.Pods, cfg.Clients, func(i int) error {
		p := r.pod(i)
		r.mu.Lock()
		r.sent[i] = time.Now()
		r.mu.Unlock()
		_, err := r.client.CoreV1().Pods(r.ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("create pods: %w", err)
	}
	select {
	case <-r.allDone:
	case err := <-schedErr:
		return Result{}, fmt.Errorf("scheduler stopped: %w", err)
	case <-time.After(cfg.Timeout):
		r.mu.Lock()
		n := r.nBound
		r.mu.Unlock()
		return Result{}, fmt.Errorf("%d of %d pods bound after %s", n, cfg.Pods, cfg.Timeout)
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	r.mu.Lock()
	last := slices.MaxFunc(r.bound, func(a, b time.Time) int { return a.Compare(b) })
	lat := make([]time.Duration, cfg.Pods)
	for i := range lat {
		lat[i] = r.bound[i].Sub(r.sent[i])
	}
	schedLat := slices.Clone(r.sched)
	nodeOf := slices.Clone(r.nodeOf)
	r.mu.Unlock()
	elapsed := last.Sub(start)
	slices.Sort(lat)
	slices.Sort(schedLat)

	if err := r.check(nodeOf); err != nil {
		return Result{}, err
	}

	// The scheduler's memory: what the heap and stacks give back when it
	// stops and its informers, cache and queue are collected.
	withSched := liveBytes()
	stopSched()
	if err := <-schedErr; err != nil {
		return Result{}, fmt.Errorf("scheduler: %w", err)
	}
	without := liveBytes()
	schedMiB := float64(withSched-without) / (1 << 20)
	if withSched < without {
		schedMiB = 0
	}

	n := float64(cfg.Pods)
	figures := map[string]Figure{
		"pods_per_s":           {n / elapsed.Seconds(), "pods/s"},
		"p50_ms":               {ms(percentile(lat, 50)), "ms"},
		"p99_ms":               {ms(percentile(lat, 99)), "ms"},
		"sched_p50_ms":         {ms(percentile(schedLat, 50)), "ms"},
		"sched_p99_ms":         {ms(percentile(schedLat, 99)), "ms"},
		"scheduler_rss_mib":    {schedMiB, "MiB"},
		"process_peak_rss_mib": {peakRSSMiB(), "MiB"},
		"nodes":                {float64(cfg.Nodes), "count"},
		"pods":                 {n, "count"},
	}
	if victims != nil {
		figures["victims_deleted"] = Figure{float64(victims.count()), "count"}
	}
	where := "a control plane started in this process (embedded etcd, temporary data dir)"
	if cfg.Kubeconfig != "" {
		where = "the control plane of " + cfg.Kubeconfig
	}
	return Result{Scenario: "scheduler-" + cfg.Workload, Figures: figures, Notes: []string{
		fmt.Sprintf("%s workload: %d nodes, %d pods created by %d concurrent clients against %s; the scheduler runs in this process.",
			cfg.Workload, cfg.Nodes, cfg.Pods, cfg.Clients, where),
		"pods_per_s: first create sent to last binding written; p50/p99: each pod's create sent to its binding written; sched_p50/p99: the scheduler's own first attempt to binding.",
		"scheduler_rss_mib: Go heap and stacks freed when the scheduler stops (informers, cache, queue), after all pods are bound; a standalone process adds the Go runtime's base and GC headroom. process_peak_rss_mib: peak RSS of this whole process (control plane, scheduler and load generator).",
	}}, nil
}

// setup creates the namespace, priority classes and nodes.
func (r *schedRun) setup(ctx context.Context) error {
	cfg := r.cfg
	if _, err := r.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	// no serviceaccount controller runs beside this scheduler; pods need
	// their namespace's default ServiceAccount to be admitted
	if _, err := r.client.CoreV1().ServiceAccounts(r.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account: %w", err)
	}
	if cfg.Workload == WorkloadPreemption {
		for name, v := range map[string]int32{"skiff-bench-low": lowPriority, "skiff-bench-high": highPriority} {
			pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: v}
			if _, err := r.client.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create priority class: %w", err)
			}
		}
	}
	fmt.Fprintf(cfg.Progress, "creating %d nodes...\n", cfg.Nodes)
	list := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(nodeCPU),
		corev1.ResourceMemory: resource.MustParse(nodeMemory), corev1.ResourcePods: resource.MustParse(nodePods)}
	_, _, err := parallel(cfg.Nodes, cfg.Clients, func(i int) error {
		name := r.nodeName(i)
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
				corev1.LabelHostname: name, corev1.LabelTopologyZone: "zone-" + strconv.Itoa(i%zones),
				"skiff.sh/bench": r.run}},
			Status: corev1.NodeStatus{Allocatable: list, Capacity: list,
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
					LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}},
		}
		created, err := r.client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if len(created.Status.Conditions) == 0 { // a control plane that drops status on create
			created.Status = n.Status
			_, err = r.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create nodes: %w", err)
	}
	return nil
}

// cleanup removes what the run created (matters with --kubeconfig).
func (r *schedRun) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := int64(0)
	_ = r.client.CoreV1().Pods(r.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	_ = r.client.CoreV1().Namespaces().Delete(ctx, r.ns, metav1.DeleteOptions{})
	_ = r.client.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "skiff.sh/bench=" + r.run})
}

// pod is the i-th measured pod of the workload.
func (r *schedRun) pod(i int) *corev1.Pod {
	p := r.basePod(r.podName(i), podCPU)
	switch r.cfg.Workload {
	case WorkloadSpread:
		sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}}
		p.Labels["app"] = "spread"
		// Zones are a hard constraint and hostnames a soft one: both hard
		// cannot hold once zones with unequal node counts each have more
		// than one pod per node.
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
			{MaxSkew: 1, TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel},
			{MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: sel},
		}
	case WorkloadAntiAffinity:
		group := strconv.Itoa(i / r.groupSize())
		p.Labels["group"] = group
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				TopologyKey:   corev1.LabelHostname,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": group}},
			}},
		}}
	case WorkloadPreemption:
		p = r.basePod(r.podName(i), "1")
		p.Spec.PriorityClassName = "skiff-bench-high"
		p.Spec.Priority = ptr(int32(highPriority))
	}
	return p
}

// groupSize is the number of pods per anti-affinity group: all nodes,
// or all pods when there are fewer.
func (r *schedRun) groupSize() int { return min(r.cfg.Nodes, r.cfg.Pods) }

func (r *schedRun) basePod(name, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns, Labels: map[string]string{"bench": "scheduler"}},
		Spec: corev1.PodSpec{SchedulerName: benchSchedulerName, Containers: []corev1.Container{{
			Name: "pause", Image: "registry.k8s.io/pause:3.10",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(podMemory)}},
		}}},
	}
}

func ptr[T any](v T) *T { return &v }

// onBound records a binding (the scheduler's Config.OnBound).
func (r *schedRun) onBound(namespace, name, node string, latency time.Duration) {
	if namespace != r.ns {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if strings.HasPrefix(name, "low-") {
		r.fillBound++
		if r.fillBound == r.fillWant {
			close(r.fillDone)
		}
		return
	}
	i, ok := r.index[name]
	if !ok || !r.bound[i].IsZero() {
		return
	}
	r.bound[i], r.nodeOf[i] = now, node
	r.sched = append(r.sched, latency)
	r.nBound++
	if r.nBound == r.cfg.Pods {
		close(r.allDone)
	}
}

// fill creates the low-priority pods that fill every node (preemption).
func (r *schedRun) fill(ctx context.Context) error {
	n := r.cfg.Nodes * victimsPerNod
	r.mu.Lock()
	r.fillWant = n
	r.mu.Unlock()
	fmt.Fprintf(r.cfg.Progress, "filling the nodes with %d low-priority pods...\n", n)
	_, _, err := parallel(n, r.cfg.Clients, func(i int) error {
		p := r.basePod(fmt.Sprintf("low-%06d", i), "1")
		p.Spec.PriorityClassName = "skiff-bench-low"
		p.Spec.Priority = ptr(int32(lowPriority))
		_, err := r.client.CoreV1().Pods(r.ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("create low-priority pods: %w", err)
	}
	select {
	case <-r.fillDone:
		return nil
	case <-time.After(r.cfg.Timeout):
		return fmt.Errorf("low-priority pods not all bound after %s", r.cfg.Timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// victimFinisher plays the part of the kubelets that no simulated node
// runs: it finishes the graceful deletion of preemption victims.
type victimFinisher struct {
	mu      sync.Mutex
	deleted map[string]bool
}

func (v *victimFinisher) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.deleted)
}

// finishVictims deletes, with grace period 0, every pod of the run whose
// deletionTimestamp appears, until ctx ends.
func (r *schedRun) finishVictims(ctx context.Context) (*victimFinisher, error) {
	v := &victimFinisher{deleted: map[string]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(r.client, 0, informers.WithNamespace(r.ns))
	inf := f.Core().V1().Pods().Informer()
	finish := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.DeletionTimestamp == nil {
			return
		}
		v.mu.Lock()
		done := v.deleted[p.Name]
		v.deleted[p.Name] = true
		v.mu.Unlock()
		if done {
			return
		}
		go func() {
			zero := int64(0)
			err := r.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
				GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
				fmt.Fprintf(r.cfg.Progress, "finish deletion of %s: %v\n", p.Name, err)
			}
		}()
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: finish, UpdateFunc: func(_, obj any) { finish(obj) },
	}); err != nil {
		return nil, fmt.Errorf("victim handler: %w", err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, errors.New("victim informer did not sync")
	}
	return v, nil
}

// check verifies that every measured pod is bound as its workload demands.
func (r *schedRun) check(nodeOf []string) error {
	zoneOf := map[string]string{}
	for i := range r.cfg.Nodes {
		zoneOf[r.nodeName(i)] = "zone-" + strconv.Itoa(i%zones)
	}
	for i, n := range nodeOf {
		if _, ok := zoneOf[n]; !ok {
			return fmt.Errorf("pod %s bound to unknown node %q", r.podName(i), n)
		}
	}
	switch r.cfg.Workload {
	case WorkloadSpread:
		perZone := map[string]int{}
		for _, n := range nodeOf {
			perZone[zoneOf[n]]++
		}
		lo, hi := len(nodeOf), 0
		for z := range zones {
			c := perZone["zone-"+strconv.Itoa(z)]
			lo, hi = min(lo, c), max(hi, c)
		}
		if hi-lo > 1 {
			return fmt.Errorf("spread: zones hold %v pods, skew %d > maxSkew 1", perZone, hi-lo)
		}
	case WorkloadAntiAffinity:
		seen := map[string]int{}
		for i, n := range nodeOf {
			key := strconv.Itoa(i/r.groupSize()) + "/" + n
			if j, ok := seen[key]; ok {
				return fmt.Errorf("antiaffinity: pods %s and %s of one group both on %s", r.podName(j), r.podName(i), n)
			}
			seen[key] = i
		}
	}
	return nil
}

// liveBytes is the Go heap in use plus goroutine stacks, after a full
// garbage collection.
func liveBytes() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	samples := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(samples)
	var total uint64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			total += s.Value.Uint64()
		}
	}
	return total
}

// peakRSSMiB is this process's peak resident set (VmHWM), 0 if unknown.
func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return kb / 1024
			}
		}
	}
	return 0
}
