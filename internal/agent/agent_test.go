package agent

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
)

// fakeRuntime records calls and reports every container running.
type fakeRuntime struct {
	mu     sync.Mutex
	synced []types.UID
	killed map[types.UID]time.Duration
	forgot []types.UID
	held   []PodRef
}

func (f *fakeRuntime) Version(context.Context) (string, error) { return "fake://1", nil }

func (f *fakeRuntime) SyncPod(_ context.Context, p *corev1.Pod) (*PodStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.synced = append(f.synced, p.UID)
	st := &PodStatus{SandboxReady: true, IPs: []string{"10.244.0.9"}}
	for _, c := range p.Spec.Containers {
		st.Containers = append(st.Containers, running(c.Name))
	}
	return st, nil
}

func (f *fakeRuntime) KillPod(_ context.Context, p *corev1.Pod, grace time.Duration) (*PodStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killed == nil {
		f.killed = map[types.UID]time.Duration{}
	}
	f.killed[p.UID] = grace
	st := &PodStatus{}
	for _, c := range p.Spec.Containers {
		st.Containers = append(st.Containers, exited(c.Name, 0))
	}
	return st, nil
}

func (f *fakeRuntime) ListPods(context.Context) ([]PodRef, error) { return f.held, nil }

func (f *fakeRuntime) ForgetPod(_ context.Context, uid types.UID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, uid)
	return nil
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestAgent(t *testing.T, client *fake.Clientset, clk *clocktesting.FakeClock, mod func(*Config)) (*Agent, *fakeRuntime) {
	t.Helper()
	rt := &fakeRuntime{}
	capacity, err := Resources("2", "4Gi", "50Gi", 110)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{NodeName: "n1", Client: client, Runtime: rt, Capacity: capacity, Clock: clk, Logger: quietLogger(),
		Labels: map[string]string{"pool": "a"}, InstanceType: "small",
		Taints:     []corev1.Taint{{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.0.2.10"}, {Type: corev1.NodeHostName, Address: "n1"}},
		SystemInfo: corev1.NodeSystemInfo{KernelVersion: "6.1.0", OSImage: "test", OperatingSystem: "linux", Architecture: "amd64"}}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.cfg.SystemInfo.ContainerRuntimeVersion = "fake://1"
	return a, rt
}

func countActions(c *fake.Clientset, verb, resource string) int {
	n := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource {
			n++
		}
	}
	return n
}

func TestRegisterCreatesNode(t *testing.T) {
	client := fake.NewClientset()
	a, _ := newTestAgent(t, client, clocktesting.NewFakeClock(t0), nil)
	if err := a.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{LabelHostname: "n1", LabelOS: "linux", LabelArch: "amd64", LabelInstanceType: "small", "pool": "a"} {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "dedicated" {
		t.Errorf("taints %+v", n.Spec.Taints)
	}
	if n.Status.Capacity.Cpu().String() != "2" || n.Status.Allocatable.Memory().String() != "4Gi" || n.Status.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %v allocatable %v", n.Status.Capacity, n.Status.Allocatable)
	}
	var types []corev1.NodeConditionType
	for _, c := range n.Status.Conditions {
		types = append(types, c.Type)
		if !c.LastHeartbeatTime.Time.Equal(t0) || !c.LastTransitionTime.Time.Equal(t0) {
			t.Errorf("%s times %v %v", c.Type, c.LastHeartbeatTime, c.LastTransitionTime)
		}
		if c.Type == corev1.NodeReady && (c.Status != corev1.ConditionTrue || c.Reason != "KubeletReady") {
			t.Errorf("Ready %+v", c)
		}
		if c.Type != corev1.NodeReady && c.Status != corev1.ConditionFalse {
			t.Errorf("%s %+v", c.Type, c)
		}
	}
	if len(types) != 4 || types[3] != corev1.NodeReady {
		t.Errorf("conditions %v", types)
	}
	if n.Status.NodeInfo.KubeletVersion != KubeletVersion || n.Status.NodeInfo.ContainerRuntimeVersion != "fake://1" || n.Status.NodeInfo.KernelVersion != "6.1.0" {
		t.Errorf("nodeInfo %+v", n.Status.NodeInfo)
	}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0].Address != "192.0.2.10" {
		t.Errorf("addresses %+v", n.Status.Addresses)
	}
}

func TestRegisterUpdatesExistingNode(t *testing.T) {
	existing := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kept": "yes", "pool": "old"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: "admin", Effect: corev1.TaintEffectNoExecute}}, PodCIDR: "10.244.7.0/24"},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"},
			{Type: "NetworkUnavailable", Status: corev1.ConditionFalse, Reason: "RouteCreated"}}},
	}
	client := fake.NewClientset(existing)
	a, _ := newTestAgent(t, client, clocktesting.NewFakeClock(t0), nil)
	cidrs := &cidrRuntime{fakeRuntime: &fakeRuntime{}}
	a.rt = cidrs
	if err := a.register(context.Background()); err != nil {
		t.Fatal(err)
	}
	n, _ := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if n.Labels["kept"] != "yes" || n.Labels["pool"] != "a" || n.Labels[LabelHostname] != "n1" {
		t.Errorf("labels %v", n.Labels)
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "admin" {
		t.Errorf("taints of an existing node must be left alone: %+v", n.Spec.Taints)
	}
	got := map[corev1.NodeConditionType]corev1.ConditionStatus{}
	for _, c := range n.Status.Conditions {
		got[c.Type] = c.Status
	}
	if got[corev1.NodeReady] != corev1.ConditionTrue || got["NetworkUnavailable"] != corev1.ConditionFalse || len(got) != 5 {
		t.Errorf("conditions %v", got)
	}
	if cidrs.cidr != "10.244.7.0/24" {
		t.Errorf("runtime told pod CIDR %q", cidrs.cidr)
	}
}

type cidrRuntime struct {
	*fakeRuntime
	cidr string
}

func (c *cidrRuntime) UpdatePodCIDR(cidr string) error { c.cidr = cidr; return nil }

func TestLeaseRenewal(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "node-uid"}})
	clk := clocktesting.NewFakeClock(t0)
	a, _ := newTestAgent(t, client, clk, nil)
	ctx := context.Background()
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := client.CoordinationV1().Leases(NodeLeaseNamespace).Get(ctx, "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.HolderIdentity != "n1" || *l.Spec.LeaseDurationSeconds != 40 || !l.Spec.RenewTime.Time.Equal(t0) {
		t.Errorf("lease %+v", l.Spec)
	}
	if len(l.OwnerReferences) != 1 || l.OwnerReferences[0].Kind != "Node" || l.OwnerReferences[0].UID != "node-uid" {
		t.Errorf("owner %+v", l.OwnerReferences)
	}
	client.ClearActions()
	clk.Step(10 * time.Second)
	if err := a.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	l, _ = client.CoordinationV1().Leases(NodeLeaseNamespace).Get(ctx, "n1", metav1.GetOptions{})
	if !l.Spec.RenewTime.Time.Equal(t0.Add(10 * time.Second)) {
		t.Errorf("renewTime %v", l.Spec.RenewTime)
	}
	// one write per renewal, no read
	if u, g := countActions(client, "update", "leases"), countActions(client, "get", "leases"); u != 1 || g != 1 {
		t.Errorf("renewal did %d updates and %d gets (1 of them the test's), want 1 and 1", u, g)
	}
	// someone deleted the lease: the next renewal creates it again
	if err := client.CoordinationV1().Leases(NodeLeaseNamespace).Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := a.renewLease(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoordinationV1().Leases(NodeLeaseNamespace).Get(ctx, "n1", metav1.GetOptions{}); err != nil {
		t.Errorf("lease not recreated: %v", err)
	}
}

// TestHeartbeat steps a fake clock: the lease is renewed every 10 s, node
// status is written only every 60 s while nothing changes, and at once
// when a condition changes.
func TestHeartbeat(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(t0)
	var pressure Pressure
	a, _ := newTestAgent(t, client, clk, func(c *Config) {
		c.Pressure = func() Pressure { return pressure }
	})
	ctx := context.Background()
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	a.nextRenew, a.nextStatus = t0.Add(10*time.Second), t0.Add(10*time.Second)
	var leaseWrites, statusPatches []int
	for i := 1; i <= 6; i++ {
		clk.Step(10 * time.Second)
		a.beat(ctx)
		leaseWrites = append(leaseWrites, countActions(client, "update", "leases")+countActions(client, "create", "leases"))
		statusPatches = append(statusPatches, countActions(client, "patch", "nodes"))
	}
	if want := []int{1, 2, 3, 4, 5, 6}; !slices.Equal(leaseWrites, want) {
		t.Errorf("lease writes after each beat %v, want %v", leaseWrites, want)
	}
	if want := []int{0, 0, 0, 0, 0, 1}; !slices.Equal(statusPatches, want) {
		t.Errorf("status patches after each beat %v, want %v", statusPatches, want)
	}
	pressure.Memory = true
	clk.Step(10 * time.Second)
	a.beat(ctx)
	if n := countActions(client, "patch", "nodes"); n != 2 {
		t.Errorf("%d status patches after memory pressure, want 2", n)
	}
	n, _ := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeMemoryPressure && (c.Status != corev1.ConditionTrue || !c.LastTransitionTime.Time.Equal(t0.Add(70*time.Second))) {
			t.Errorf("MemoryPressure %+v", c)
		}
		if c.Type == corev1.NodeReady && (!c.LastTransitionTime.Time.Equal(t0) || !c.LastHeartbeatTime.Time.Equal(t0.Add(70*time.Second))) {
			t.Errorf("Ready %+v", c)
		}
	}
}

// TestHeartbeatLoop checks that the loop beats on the clock's ticks.
func TestHeartbeatLoop(t *testing.T) {
	client := fake.NewClientset()
	clk := clocktesting.NewFakeClock(t0)
	a, _ := newTestAgent(t, client, clk, func(c *Config) { c.HeartbeatOffset = 3 * time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.heartbeat(ctx) }()
	defer func() { cancel(); <-done }()
	for _, d := range []time.Duration{3 * time.Second, 10 * time.Second} {
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		clk.Step(d)
	}
	for countActions(client, "create", "leases") == 0 {
		time.Sleep(time.Millisecond)
	}
	l, err := client.CoordinationV1().Leases(NodeLeaseNamespace).Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil || !l.Spec.RenewTime.Time.Equal(t0.Add(13*time.Second)) {
		t.Errorf("lease after the first beat: %+v %v", l, err)
	}
}

func TestSyncPodAndDeletion(t *testing.T) {
	pod := testPod(corev1.RestartPolicyAlways, "a")
	pod.Spec.NodeName = "n1"
	client := fake.NewClientset(pod)
	clk := clocktesting.NewFakeClock(t0)
	a, rt := newTestAgent(t, client, clk, nil)
	src := NewPodSource(PodSourceConfig{Client: client, NodeName: "n1", Logger: quietLogger()})
	store := src.informer.GetStore()
	if err := store.Add(pod); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.syncPod(ctx, src, "ns/p"); err != nil {
		t.Fatal(err)
	}
	got, _ := client.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "10.244.0.9" || got.Status.HostIP != "192.0.2.10" {
		t.Fatalf("status after sync: %+v", got.Status)
	}
	var patch k8stesting.PatchAction
	for _, act := range client.Actions() {
		if p, ok := act.(k8stesting.PatchAction); ok && act.GetSubresource() == "status" {
			patch = p
		}
	}
	if patch == nil || patch.GetPatchType() != types.StrategicMergePatchType {
		t.Fatalf("no strategic merge patch of pods/status: %v", client.Actions())
	}
	// a second sync with nothing new writes nothing, even from a stale cache
	client.ClearActions()
	if _, err := a.syncPod(ctx, src, "ns/p"); err != nil {
		t.Fatal(err)
	}
	if n := countActions(client, "patch", "pods"); n != 0 {
		t.Errorf("%d status patches for an unchanged pod", n)
	}

	// graceful deletion
	deleting := got.DeepCopy()
	ts := metav1.NewTime(t0)
	grace := int64(30)
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = &ts, &grace
	if err := store.Update(deleting); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("ns").Update(ctx, deleting, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if _, err := a.syncPod(ctx, src, "ns/p"); err != nil {
		t.Fatal(err)
	}
	if g, ok := rt.killed[pod.UID]; !ok || g != 30*time.Second {
		t.Errorf("runtime kill: %v", rt.killed)
	}
	var del k8stesting.DeleteAction
	for _, act := range client.Actions() {
		if d, ok := act.(k8stesting.DeleteAction); ok {
			del = d
		}
	}
	if del == nil {
		t.Fatalf("pod not deleted: %v", client.Actions())
	}
	opts := del.GetDeleteOptions()
	if opts.GracePeriodSeconds == nil || *opts.GracePeriodSeconds != 0 || opts.Preconditions == nil || *opts.Preconditions.UID != pod.UID {
		t.Errorf("delete options %+v", opts)
	}
	if countActions(client, "patch", "pods") != 1 {
		t.Errorf("the final status was not written before deleting: %v", client.Actions())
	}
	if len(rt.forgot) != 1 || a.pods.get("ns/p") != nil {
		t.Errorf("pod not forgotten: %v", rt.forgot)
	}
	if _, err := client.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod still there: %v", err)
	}
}

func TestSyncPodRemovedFromAPI(t *testing.T) {
	pod := testPod(corev1.RestartPolicyAlways, "a")
	client := fake.NewClientset(pod)
	a, rt := newTestAgent(t, client, clocktesting.NewFakeClock(t0), nil)
	src := NewPodSource(PodSourceConfig{Client: client, Logger: quietLogger()})
	_ = src.informer.GetStore().Add(pod)
	ctx := context.Background()
	if _, err := a.syncPod(ctx, src, "ns/p"); err != nil {
		t.Fatal(err)
	}
	// force-deleted: gone from the watch
	_ = src.informer.GetStore().Delete(pod)
	if _, err := a.syncPod(ctx, src, "ns/p"); err != nil {
		t.Fatal(err)
	}
	if g, ok := rt.killed[pod.UID]; !ok || g != 0 {
		t.Errorf("runtime kill of a removed pod: %v", rt.killed)
	}
	if len(rt.forgot) != 1 {
		t.Errorf("forgotten %v", rt.forgot)
	}
}

func TestParseLabelsAndTaints(t *testing.T) {
	l, err := ParseLabels("a=1, example.com/b=two,")
	if err != nil || len(l) != 2 || l["example.com/b"] != "two" {
		t.Errorf("labels %v %v", l, err)
	}
	for _, bad := range []string{"a", "=x", "a=b c"} {
		if _, err := ParseLabels(bad); err == nil {
			t.Errorf("ParseLabels(%q) accepted", bad)
		}
	}
	ts, err := ParseTaints("dedicated=gpu:NoSchedule,spot:PreferNoSchedule")
	if err != nil || len(ts) != 2 || ts[0].Value != "gpu" || ts[1].Key != "spot" || ts[1].Effect != corev1.TaintEffectPreferNoSchedule {
		t.Errorf("taints %+v %v", ts, err)
	}
	for _, bad := range []string{"a=b", "a=b:Never", ":NoSchedule"} {
		if _, err := ParseTaints(bad); err == nil {
			t.Errorf("ParseTaints(%q) accepted", bad)
		}
	}
}
