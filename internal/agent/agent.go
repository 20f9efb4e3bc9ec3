package agent

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// Defaults of the heartbeat intervals.
const (
	DefaultLeaseDuration        = 40 * time.Second
	DefaultRenewInterval        = 10 * time.Second
	DefaultStatusInterval       = 10 * time.Second
	DefaultStatusReportInterval = 60 * time.Second
)

// NodeLeaseNamespace holds the nodes' heartbeat Leases.
const NodeLeaseNamespace = "kube-node-lease"

// Config configures the agent of one node.
type Config struct {
	// NodeName is the node's name (required).
	NodeName string
	// Client talks to the API server (required).
	Client kubernetes.Interface
	// Runtime runs the node's pods (required).
	Runtime Runtime
	// Pods is a pod source shared with other agents in this process; nil
	// makes the agent watch the pods of its node on its own.
	Pods *PodSource
	// Capacity and Allocatable are the node's resources; nil Capacity
	// means this machine's (see Machine), nil Allocatable means Capacity.
	Capacity, Allocatable corev1.ResourceList
	// DataDir is where the agent keeps its state; its file system is the
	// node's ephemeral storage when Capacity is nil.
	DataDir string
	// Labels are added to the node's default labels.
	Labels map[string]string
	// Taints are set when the node is first registered.
	Taints []corev1.Taint
	// InstanceType, when set, is the node.kubernetes.io/instance-type label.
	InstanceType string
	// Addresses are the node's addresses; nil means the hostname and the
	// first non-loopback IPv4 address of this machine.
	Addresses []corev1.NodeAddress
	// SystemInfo is the node's nodeInfo; zero means this machine's.
	SystemInfo corev1.NodeSystemInfo
	// Pressure, when set, reports resource pressure for the node's
	// conditions; nil means none.
	Pressure func() Pressure
	// LeaseDuration, RenewInterval, StatusInterval and
	// StatusReportInterval tune heartbeats: the Lease is renewed every
	// RenewInterval; conditions are computed every StatusInterval and
	// written when they change or StatusReportInterval has passed.
	LeaseDuration, RenewInterval, StatusInterval, StatusReportInterval time.Duration
	// MetricsInterval is how often a runtime that is a StatsProvider has
	// its usage reported to the metrics API (default 15s; negative: never).
	MetricsInterval time.Duration
	// GCInterval is how often a runtime that is a GarbageCollector
	// collects garbage (default 1m; negative: never).
	GCInterval time.Duration
	// KubeletPort is the port of the node's streaming endpoint (package
	// stream), advertised in status.daemonEndpoints (0: 10250).
	KubeletPort int32
	// HeartbeatOffset delays the first heartbeat so that many agents in
	// one process spread their writes over the interval.
	HeartbeatOffset time.Duration
	// Clock is the time source; nil means the real clock.
	Clock clock.WithTicker
	// Logger receives the agent's logs.
	Logger *slog.Logger
}

// Agent is the node agent of one node.
type Agent struct {
	cfg     Config
	log     *slog.Logger
	clock   clock.WithTicker
	client  kubernetes.Interface
	rt      Runtime
	ready   chan struct{}
	hostIPs []string

	mu              sync.Mutex
	node            *corev1.Node // as last written or read
	lease           *coordinationv1.Lease
	lastStatusWrite time.Time
	nextRenew       time.Time
	nextStatus      time.Time
	podCIDR         string
	lastNodeRead    time.Time
	pods            *podState
	src             *PodSource
	nextMetrics     time.Time
	nextGC          time.Time
	adopted         bool // the runtime's pods were compared with the API once
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Agent, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("agent: no node name")
	}
	if errs := validationNodeName(cfg.NodeName); errs != "" {
		return nil, fmt.Errorf("agent: node name %q: %s", cfg.NodeName, errs)
	}
	if cfg.Client == nil {
		return nil, errors.New("agent: no API client")
	}
	if cfg.Runtime == nil {
		return nil, errors.New("agent: no runtime")
	}
	if cfg.Capacity == nil {
		dir := cfg.DataDir
		if dir == "" {
			dir = "/"
		}
		c, a, err := Machine(dir, 0)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		cfg.Capacity = c
		if cfg.Allocatable == nil {
			cfg.Allocatable = a
		}
	}
	if cfg.Allocatable == nil {
		cfg.Allocatable = cfg.Capacity.DeepCopy()
	}
	if cfg.Addresses == nil {
		cfg.Addresses = machineAddresses(cfg.NodeName)
	}
	if cfg.SystemInfo == (corev1.NodeSystemInfo{}) {
		cfg.SystemInfo = SystemInfo()
	}
	if cfg.SystemInfo.KubeletVersion == "" {
		cfg.SystemInfo.KubeletVersion = KubeletVersion
	}
	for p, d := range map[*time.Duration]time.Duration{&cfg.LeaseDuration: DefaultLeaseDuration,
		&cfg.RenewInterval: DefaultRenewInterval, &cfg.StatusInterval: DefaultStatusInterval,
		&cfg.StatusReportInterval: DefaultStatusReportInterval, &cfg.MetricsInterval: DefaultMetricsInterval, &cfg.GCInterval: DefaultGCInterval} {
		if *p == 0 || *p < 0 && p != &cfg.MetricsInterval && p != &cfg.GCInterval {
			*p = d
		}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName), clock: cfg.Clock, client: cfg.Client,
		rt: cfg.Runtime, ready: make(chan struct{}), pods: newPodState()}
	for _, ad := range cfg.Addresses {
		if ad.Type == corev1.NodeInternalIP || ad.Type == corev1.NodeExternalIP {
			a.hostIPs = append(a.hostIPs, ad.Address)
			break
		}
	}
	return a, nil
}

// Name is the node's name.
func (a *Agent) Name() string { return a.cfg.NodeName }

// NodeIP is the node's InternalIP (or ExternalIP); "" when it has none.
func (a *Agent) NodeIP() string {
	if len(a.hostIPs) == 0 {
		return ""
	}
	return a.hostIPs[0]
}

// Ready is closed once the node is registered and its lease exists.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Run registers the node, then heartbeats and runs the node's pods until
// ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	version, err := a.rt.Version(ctx)
	if err != nil {
		return fmt.Errorf("runtime version: %w", err)
	}
	a.cfg.SystemInfo.ContainerRuntimeVersion = version
	// register, retrying with back-off while the server is unreachable
	backoff := wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 30 * time.Second}
	for {
		err := a.register(ctx)
		if err == nil {
			break
		}
		a.log.Warn("registering the node failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-a.clock.After(backoff.Step()):
		}
	}
	if err := a.renewLease(ctx); err != nil {
		a.log.Warn("creating the node lease failed; retrying on the next heartbeat", "err", err)
	}
	src := a.cfg.Pods
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if src == nil {
		src = NewPodSource(PodSourceConfig{Client: a.client, NodeName: a.cfg.NodeName, Logger: a.cfg.Logger})
		wg.Add(1)
		go func() { defer wg.Done(); src.Run(ctx) }()
	}
	src.add(a)
	defer src.remove(a)
	a.mu.Lock()
	a.src = src
	a.mu.Unlock()
	close(a.ready)
	a.log.Info("node registered", "runtime", version)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if src.waitSynced(ctx) {
			a.adopt(ctx, src)
		}
	}()
	a.heartbeat(ctx)
	return nil
}

func validationNodeName(name string) string {
	if len(name) > 253 {
		return "longer than 253 characters"
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || (r == '-' || r == '.') && i > 0 && i < len(name)-1
		if !ok {
			return "must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
		}
	}
	return ""
}

// labels are the node's labels: the defaults, then the configured ones.
func (a *Agent) labels() map[string]string {
	l := map[string]string{LabelHostname: a.cfg.NodeName, LabelOS: runtime.GOOS, LabelArch: runtime.GOARCH}
	if a.cfg.SystemInfo.OperatingSystem != "" {
		l[LabelOS] = a.cfg.SystemInfo.OperatingSystem
	}
	if a.cfg.SystemInfo.Architecture != "" {
		l[LabelArch] = a.cfg.SystemInfo.Architecture
	}
	if a.cfg.InstanceType != "" {
		l[LabelInstanceType] = a.cfg.InstanceType
	}
	maps.Copy(l, a.cfg.Labels)
	return l
}

// status is the node's full status as this agent reports it.
func (a *Agent) status(old []corev1.NodeCondition) corev1.NodeStatus {
	var p Pressure
	if a.cfg.Pressure != nil {
		p = a.cfg.Pressure()
	}
	return corev1.NodeStatus{
		Capacity: a.cfg.Capacity.DeepCopy(), Allocatable: a.cfg.Allocatable.DeepCopy(),
		Phase:           "",
		Conditions:      mergeNodeConditions(old, stampConditions(nodeConditions(p), old, metav1.NewTime(a.clock.Now()))),
		Addresses:       append([]corev1.NodeAddress(nil), a.cfg.Addresses...),
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: cmp.Or(a.cfg.KubeletPort, 10250)}},
		NodeInfo:        a.cfg.SystemInfo,
	}
}

// mergeNodeConditions replaces the agent's conditions in old and keeps the
// ones others set (NetworkUnavailable, problem detectors).
func mergeNodeConditions(old, ours []corev1.NodeCondition) []corev1.NodeCondition {
	out := append([]corev1.NodeCondition(nil), ours...)
	for _, o := range old {
		mine := false
		for _, c := range ours {
			mine = mine || c.Type == o.Type
		}
		if !mine {
			out = append(out, o)
		}
	}
	return out
}

// register creates the node, or updates the one that exists with this
// agent's labels and status.
func (a *Agent) register(ctx context.Context) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: a.labels(),
			Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
		Spec:   corev1.NodeSpec{Taints: append([]corev1.Taint(nil), a.cfg.Taints...)},
		Status: a.status(nil),
	}
	created, err := a.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err == nil {
		if len(created.Status.Capacity) == 0 {
			// the server dropped the status given on create: write it
			created.Status = node.Status
			if created, err = a.client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update status of node %s: %w", a.cfg.NodeName, err)
			}
		}
		a.setNode(created, true)
		return nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", a.cfg.NodeName, err)
	}
	for attempt := 0; ; attempt++ {
		cur, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get node %s: %w", a.cfg.NodeName, err)
		}
		want := cur.DeepCopy()
		if want.Labels == nil {
			want.Labels = map[string]string{}
		}
		maps.Copy(want.Labels, a.labels())
		if !maps.Equal(want.Labels, cur.Labels) {
			if want, err = a.client.CoreV1().Nodes().Update(ctx, want, metav1.UpdateOptions{}); err != nil {
				if apierrors.IsConflict(err) && attempt < 5 {
					continue
				}
				return fmt.Errorf("update node %s: %w", a.cfg.NodeName, err)
			}
		}
		want.Status = a.status(want.Status.Conditions)
		updated, err := a.client.CoreV1().Nodes().UpdateStatus(ctx, want, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return fmt.Errorf("update status of node %s: %w", a.cfg.NodeName, err)
		}
		a.setNode(updated, true)
		return nil
	}
}

// setNode remembers the node as last seen and tells the runtime about a
// new pod CIDR.
func (a *Agent) setNode(n *corev1.Node, wroteStatus bool) {
	a.mu.Lock()
	a.node = n
	if wroteStatus {
		a.lastStatusWrite = a.clock.Now()
	}
	cidr, changed := n.Spec.PodCIDR, n.Spec.PodCIDR != a.podCIDR
	a.podCIDR = cidr
	a.mu.Unlock()
	if u, ok := a.rt.(PodCIDRUpdater); ok && changed && cidr != "" {
		if err := u.UpdatePodCIDR(cidr); err != nil {
			a.log.Warn("the runtime rejected the node's pod CIDR", "cidr", cidr, "err", err)
		}
	}
}

// ErrNoPodCIDR is what a runtime's SyncPod returns (wrapped) when the pod
// needs an IP and the runtime knows no pod CIDR yet.
var ErrNoPodCIDR = errors.New("the node has no pod CIDR yet")

// refreshPodCIDR reads the node again, at most once a second, so that a
// pod CIDR assigned after registration reaches the runtime before the next
// heartbeat. It reports whether the runtime got a new CIDR.
func (a *Agent) refreshPodCIDR(ctx context.Context) bool {
	now := a.clock.Now()
	a.mu.Lock()
	due := now.Sub(a.lastNodeRead) >= time.Second
	if due {
		a.lastNodeRead = now
	}
	before := a.podCIDR
	a.mu.Unlock()
	if !due {
		return false
	}
	n, err := a.client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		a.log.Debug("reading the node for its pod CIDR failed", "err", err)
		return false
	}
	a.setNode(n, false)
	return n.Spec.PodCIDR != "" && n.Spec.PodCIDR != before
}

// reportsStats says whether the agent reports usage to the metrics API.
func (a *Agent) reportsStats() bool {
	_, ok := a.rt.(StatsProvider)
	return ok && a.cfg.MetricsInterval > 0
}

// PodCIDRUpdater is implemented by runtimes that give pods IPs from the
// node's spec.podCIDR (the kubelet's UpdateRuntimeConfig).
type PodCIDRUpdater interface {
	UpdatePodCIDR(cidr string) error
}

// heartbeat renews the lease and refreshes node status until ctx ends.
func (a *Agent) heartbeat(ctx context.Context) {
	if a.cfg.HeartbeatOffset > 0 {
		select {
		case <-ctx.Done():
			return
		case <-a.clock.After(a.cfg.HeartbeatOffset):
		}
	}
	tick := min(a.cfg.RenewInterval, a.cfg.StatusInterval)
	if a.reportsStats() {
		tick = min(tick, a.cfg.MetricsInterval)
	}
	t := a.clock.NewTicker(tick)
	defer t.Stop()
	a.mu.Lock()
	a.nextRenew = a.clock.Now().Add(a.cfg.RenewInterval)
	a.nextStatus = a.clock.Now().Add(a.cfg.StatusInterval)
	a.nextMetrics = a.clock.Now().Add(a.cfg.MetricsInterval)
	a.nextGC = a.clock.Now().Add(a.cfg.GCInterval)
	a.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			a.beat(ctx)
		}
	}
}

// beat renews the lease and checks node status when each is due.
func (a *Agent) beat(ctx context.Context) {
	now := a.clock.Now()
	a.mu.Lock()
	renew, status := !now.Before(a.nextRenew), !now.Before(a.nextStatus)
	stats := a.reportsStats() && !now.Before(a.nextMetrics)
	if renew {
		a.nextRenew = now.Add(a.cfg.RenewInterval)
	}
	if status {
		a.nextStatus = now.Add(a.cfg.StatusInterval)
	}
	if stats {
		a.nextMetrics = now.Add(a.cfg.MetricsInterval)
	}
	gc := a.cfg.GCInterval > 0 && !now.Before(a.nextGC)
	if gc {
		a.nextGC = now.Add(a.cfg.GCInterval)
	}
	a.mu.Unlock()
	if renew {
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("renewing the node lease failed", "err", err)
		}
	}
	if status {
		if err := a.syncNodeStatus(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("updating node status failed", "err", err)
		}
	}
	if stats {
		if err := a.reportStats(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("reporting usage to the metrics API failed", "err", err)
		}
	}
	if gc {
		if err := a.garbageCollect(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("garbage collection failed", "err", err)
		}
	}
}

// syncNodeStatus writes the node's conditions when they changed or when
// StatusReportInterval has passed since the last write.
func (a *Agent) syncNodeStatus(ctx context.Context) error {
	a.mu.Lock()
	node, last := a.node, a.lastStatusWrite
	a.mu.Unlock()
	if node == nil {
		return a.register(ctx)
	}
	var p Pressure
	if a.cfg.Pressure != nil {
		p = a.cfg.Pressure()
	}
	want := nodeConditions(p)
	var mine []corev1.NodeCondition
	for _, c := range node.Status.Conditions {
		for _, w := range want {
			if c.Type == w.Type {
				mine = append(mine, c)
			}
		}
	}
	now := a.clock.Now()
	if !conditionsChanged(mine, want) && now.Sub(last) < a.cfg.StatusReportInterval {
		return nil
	}
	conds := stampConditions(want, node.Status.Conditions, metav1.NewTime(now))
	patch, err := conditionsPatch(conds)
	if err != nil {
		return err
	}
	updated, err := a.client.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, strategicMerge, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		// someone deleted the node: register it again
		a.log.Warn("the node was deleted; registering it again")
		return a.register(ctx)
	}
	if err != nil {
		return fmt.Errorf("patch node %s status: %w", a.cfg.NodeName, err)
	}
	a.setNode(updated, true)
	return nil
}

func machineAddresses(nodeName string) []corev1.NodeAddress {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = nodeName
	}
	var out []corev1.NodeAddress
	if ip := defaultIPv4(); ip != "" {
		out = append(out, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return append(out, corev1.NodeAddress{Type: corev1.NodeHostName, Address: host})
}
