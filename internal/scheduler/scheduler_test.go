package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// harness runs a Scheduler against client-go's fake clientset, which plays
// the API server: a reactor turns pods/binding creations into nodeName
// updates the way the real server does.
type harness struct {
	t      *testing.T
	client *fake.Clientset
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, file *File, objs ...runtime.Object) *harness {
	t.Helper()
	client := fake.NewClientset(objs...)
	client.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "pods"}, {Name: "nodes"}, {Name: "namespaces"}}},
		{GroupVersion: "scheduling.k8s.io/v1", APIResources: []metav1.APIResource{{Name: "priorityclasses"}}},
		{GroupVersion: "policy/v1", APIResources: []metav1.APIResource{{Name: "poddisruptionbudgets"}}},
	}
	client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := a.(clienttesting.CreateAction).GetObject().(*v1.Binding)
		obj, err := client.Tracker().Get(v1.SchemeGroupVersion.WithResource("pods"), b.Namespace, b.Name)
		if err != nil {
			return true, nil, err
		}
		pod := obj.(*v1.Pod).DeepCopy()
		pod.Spec.NodeName = b.Target.Name
		pod.Status.Conditions = append(pod.Status.Conditions, v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionTrue})
		return true, nil, client.Tracker().Update(v1.SchemeGroupVersion.WithResource("pods"), pod, b.Namespace)
	})
	s, err := New(Config{Client: client, File: file, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, client: client, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- s.Run(ctx) }()
	<-s.Ready()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel != nil {
		h.cancel()
		if err := <-h.done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.cancel = nil
	}
}

// eventually polls cond; a scheduler that never gets there fails by the
// test binary's timeout rather than by a wall-clock limit here.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) pod(ns, name string) *v1.Pod {
	p, err := h.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

func (h *harness) nodeOf(name string) string { return h.pod("default", name).Spec.NodeName }

func (h *harness) create(obj runtime.Object) {
	h.t.Helper()
	var err error
	ctx := context.Background()
	switch o := obj.(type) {
	case *v1.Pod:
		_, err = h.client.CoreV1().Pods(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
	case *v1.Node:
		_, err = h.client.CoreV1().Nodes().Create(ctx, o, metav1.CreateOptions{})
	default:
		h.t.Fatalf("unsupported %T", obj)
	}
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) events(involved string) []v1.Event {
	list, err := h.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []v1.Event
	for _, e := range list.Items {
		if e.InvolvedObject.Name == involved {
			out = append(out, e)
		}
	}
	return out
}

func node(name, cpu string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelHostname: name}},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("8Gi"), v1.ResourcePods: resource.MustParse("110")}}}
}

func pod(name, cpu string, opts ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), CreationTimestamp: metav1.Now()},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "app", Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}}}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func TestBindsPodsToFittingNodes(t *testing.T) {
	h := newHarness(t, nil, node("small", "1"), node("big", "8"))
	for i := 0; i < 4; i++ {
		h.create(pod(fmt.Sprintf("p%d", i), "2"))
	}
	other := pod("other", "100m", func(p *v1.Pod) { p.Spec.SchedulerName = "someone-else" })
	h.create(other)
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("p%d", i)
		eventually(t, name+" bound", func() bool { return h.nodeOf(name) != "" })
		if n := h.nodeOf(name); n != "big" {
			t.Errorf("%s on %s, want big", name, n)
		}
	}
	eventually(t, "Scheduled event", func() bool { return len(h.events("p0")) > 0 })
	if e := h.events("p0")[0]; e.Reason != "Scheduled" || e.Message != "Successfully assigned default/p0 to big" || e.Source.Component != "default-scheduler" {
		t.Errorf("event %s %q from %s", e.Reason, e.Message, e.Source.Component)
	}
	// Four pods of 2 cpu fill "big"; the assumed pods count at once, so a
	// fifth one fails even before the informer confirms the bindings.
	h.create(pod("p4", "2"))
	eventually(t, "p4 reported", func() bool { return len(h.events("p4")) > 0 })
	if n := h.nodeOf("p4"); n != "" {
		t.Errorf("p4 bound to full node %s", n)
	}
	if n := h.nodeOf("other"); n != "" {
		t.Errorf("pod of another scheduler was bound to %s", n)
	}
}

func TestUnschedulablePodIsReportedAndRetriedOnNodeAdd(t *testing.T) {
	h := newHarness(t, nil, node("n1", "1"), node("n2", "1"))
	h.create(pod("big", "4"))
	want := "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
	eventually(t, "condition", func() bool {
		for _, c := range h.pod("default", "big").Status.Conditions {
			if c.Type == v1.PodScheduled {
				return true
			}
		}
		return false
	})
	var cond v1.PodCondition
	for _, c := range h.pod("default", "big").Status.Conditions {
		if c.Type == v1.PodScheduled {
			cond = c
		}
	}
	if cond.Status != v1.ConditionFalse || cond.Reason != v1.PodReasonUnschedulable || cond.Message != want {
		t.Errorf("condition %+v\nwant message %q", cond, want)
	}
	eventually(t, "event", func() bool { return len(h.events("big")) > 0 })
	e := h.events("big")[0]
	if e.Type != v1.EventTypeWarning || e.Reason != "FailedScheduling" || e.Message != want {
		t.Errorf("event %s %s %q", e.Type, e.Reason, e.Message)
	}
	h.create(node("n3", "8"))
	eventually(t, "bound after node add", func() bool { return h.nodeOf("big") == "n3" })
}

func TestPreemptsLowerPriorityPod(t *testing.T) {
	high := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000}
	h := newHarness(t, nil, node("n1", "2"), high)
	h.create(pod("victim", "2"))
	eventually(t, "victim bound", func() bool { return h.nodeOf("victim") == "n1" })
	h.create(pod("vip", "2", func(p *v1.Pod) { p.Spec.PriorityClassName = "high" }))
	eventually(t, "victim deleted", func() bool {
		_, err := h.client.CoreV1().Pods("default").Get(context.Background(), "victim", metav1.GetOptions{})
		return err != nil
	})
	eventually(t, "vip nominated", func() bool { return h.pod("default", "vip").Status.NominatedNodeName == "n1" })
	eventually(t, "vip bound", func() bool { return h.nodeOf("vip") == "n1" })
	eventually(t, "preempted event", func() bool {
		for _, e := range h.events("victim") {
			if e.Reason == "Preempted" && strings.Contains(e.Message, "on node n1") {
				return true
			}
		}
		return false
	})
}

func TestPreemptionPolicyNever(t *testing.T) {
	never := v1.PreemptNever
	high := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high-never"}, Value: 1000, PreemptionPolicy: &never}
	h := newHarness(t, nil, node("n1", "2"), high)
	h.create(pod("low", "2"))
	eventually(t, "low bound", func() bool { return h.nodeOf("low") == "n1" })
	h.create(pod("polite", "2", func(p *v1.Pod) { p.Spec.PriorityClassName = "high-never" }))
	want := "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
	eventually(t, "event", func() bool {
		for _, e := range h.events("polite") {
			if e.Message == want {
				return true
			}
		}
		return false
	})
	if h.nodeOf("low") != "n1" {
		t.Error("low-priority pod was preempted despite preemptionPolicy Never")
	}
}

func TestLeaderElection(t *testing.T) {
	client := fake.NewClientset(node("n1", "4"))
	var mu sync.Mutex
	var order []string
	start := func(id string) (context.CancelFunc, <-chan error, *Scheduler) {
		s, err := New(Config{Client: client, LeaderElect: true, Identity: id, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- s.Run(ctx) }()
		go func() {
			select {
			case <-s.Ready():
				mu.Lock()
				order = append(order, id)
				mu.Unlock()
			case <-ctx.Done():
			}
		}()
		return cancel, errc, s
	}
	cancelA, errA, a := start("a")
	<-a.Ready()
	cancelB, errB, b := start("b")
	lease, err := client.CoordinationV1().Leases(DefaultLeaseNamespace).Get(context.Background(), DefaultLeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "a" {
		t.Fatalf("lease %+v err %v", lease, err)
	}
	select {
	case <-b.Ready():
		t.Fatal("second instance runs while the first holds the lease")
	default:
	}
	cancelA() // releases the lease on cancel
	if err := <-errA; err != nil {
		t.Errorf("a: %v", err)
	}
	<-b.Ready()
	cancelB()
	<-errB
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != "[a b]" {
		t.Errorf("leaders %v", order)
	}
}

func TestParseFile(t *testing.T) {
	good := `
apiVersion: skiff.sh/v1alpha1
kind: SchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  scoringStrategy: MostAllocated
  weights: {ImageLocality: 5}
  disabled: [SelectorSpread]
`
	f, err := ParseFile([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Profiles) != 2 || f.Profiles[1].ScoringStrategy != "MostAllocated" || f.Profiles[0].PercentageOfNodesToScore != 30 {
		t.Errorf("parsed %+v", f)
	}
	for _, bad := range []string{
		"profiles: [{scoringStrategy: Random}]",
		"profiles: [{weights: {NodeName: 1}}]",
		"profiles: [{disabled: [Nope]}]",
		"profiles: [{schedulerName: a}, {schedulerName: a}]",
		"parallelsm: 3",
		"kind: KubeSchedulerConfiguration",
		"percentageOfNodesToScore: 101\nprofiles: [{}]",
	} {
		if _, err := ParseFile([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestNominator(t *testing.T) {
	n := newNominator()
	a := pod("a", "1")
	n.set(a, "n1")
	if got := n.pods("n1"); len(got) != 1 || got[0].Pod != a {
		t.Fatalf("pods(n1) = %v", got)
	}
	// A status without a nomination (the write is in flight) keeps it.
	n.onPending(a.DeepCopy())
	if len(n.pods("n1")) != 1 {
		t.Fatal("in-flight nomination dropped")
	}
	moved := a.DeepCopy()
	moved.Status.NominatedNodeName = "n2"
	n.onPending(moved)
	if len(n.pods("n1")) != 0 || len(n.pods("n2")) != 1 {
		t.Fatalf("nomination not moved: n1 %d n2 %d", len(n.pods("n1")), len(n.pods("n2")))
	}
	n.forget(a)
	if len(n.pods("n2")) != 0 {
		t.Fatal("forget left the nomination")
	}
}
