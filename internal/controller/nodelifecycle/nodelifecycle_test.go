package nodelifecycle

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func TestUnknownStatus(t *testing.T) {
	hb := metav1.NewTime(t0.Add(-time.Minute))
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: hb},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, LastHeartbeatTime: hb},
			{Type: "NetworkUnavailable", Status: corev1.ConditionFalse},
		}}}
	st, changed := UnknownStatus(n, t0)
	if !changed {
		t.Fatal("not changed")
	}
	want := map[corev1.NodeConditionType]string{
		corev1.NodeReady: "Unknown/NodeStatusUnknown", corev1.NodeMemoryPressure: "Unknown/NodeStatusUnknown",
		corev1.NodeDiskPressure: "Unknown/NodeStatusNeverUpdated", corev1.NodePIDPressure: "Unknown/NodeStatusNeverUpdated",
		"NetworkUnavailable": "False/",
	}
	for _, c := range st.Conditions {
		if got := string(c.Status) + "/" + c.Reason; got != want[c.Type] {
			t.Errorf("%s: %s, want %s", c.Type, got, want[c.Type])
		}
		if c.Type == corev1.NodeReady && (!c.LastHeartbeatTime.Equal(&hb) || !c.LastTransitionTime.Time.Equal(t0) || c.Message != messageUnknown) {
			t.Errorf("ready condition %+v", c)
		}
	}
	if len(st.Conditions) != len(want) {
		t.Errorf("%d conditions, want %d", len(st.Conditions), len(want))
	}
	n.Status = st
	if _, changed := UnknownStatus(n, t0.Add(time.Second)); changed {
		t.Error("changed again")
	}
}

func TestWantTaint(t *testing.T) {
	for _, tt := range []struct {
		ready *corev1.NodeCondition
		want  string
	}{
		{nil, ""},
		{&corev1.NodeCondition{Status: corev1.ConditionTrue}, ""},
		{&corev1.NodeCondition{Status: corev1.ConditionFalse}, corev1.TaintNodeNotReady},
		{&corev1.NodeCondition{Status: corev1.ConditionUnknown}, corev1.TaintNodeUnreachable},
	} {
		if got := WantTaint(tt.ready); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.ready, got, tt.want)
		}
	}
}

func TestEvictAt(t *testing.T) {
	added := metav1.NewTime(t0.Add(-10 * time.Second))
	unreachable := corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}
	custom := corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}
	noSchedule := corev1.Taint{Key: "x", Effect: corev1.TaintEffectNoSchedule}
	tolUnreachable := func(s *int64) corev1.Toleration {
		return corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: s}
	}
	tests := []struct {
		name   string
		taints []corev1.Taint
		tols   []corev1.Toleration
		in     time.Duration // from t0; -1 for never
	}{
		{"not tolerated: now", []corev1.Taint{unreachable}, nil, 0},
		{"tolerated for 300s from when the taint was added", []corev1.Taint{unreachable}, []corev1.Toleration{tolUnreachable(ptr(int64(300)))}, 290 * time.Second},
		{"tolerated for ever", []corev1.Taint{unreachable}, []corev1.Toleration{tolUnreachable(nil)}, -1},
		{"ran out", []corev1.Taint{unreachable}, []corev1.Toleration{tolUnreachable(ptr(int64(5)))}, -5 * time.Second},
		{"negative seconds mean now", []corev1.Taint{unreachable}, []corev1.Toleration{tolUnreachable(ptr(int64(-1)))}, -10 * time.Second},
		{"NoSchedule taints do not evict", []corev1.Taint{noSchedule}, nil, -1},
		{"one taint not tolerated", []corev1.Taint{unreachable, custom}, []corev1.Toleration{tolUnreachable(nil)}, 0},
		{"equal value toleration", []corev1.Taint{custom}, []corev1.Toleration{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoExecute}}, -1},
		{"wrong value", []corev1.Taint{custom}, []corev1.Toleration{{Key: "dedicated", Value: "web"}}, 0},
		{"tolerate everything", []corev1.Taint{unreachable, custom}, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, -1},
		{"the soonest of two", []corev1.Taint{unreachable, custom}, []corev1.Toleration{tolUnreachable(ptr(int64(60))),
			{Key: "dedicated", Operator: corev1.TolerationOpExists, TolerationSeconds: ptr(int64(30))}}, 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: tt.tols}}
			at, ok := EvictAt(pod, tt.taints, t0)
			switch {
			case tt.in == -1 && ok:
				t.Errorf("evict at %v, want never", at)
			case tt.in != -1 && !ok:
				t.Errorf("never, want in %v", tt.in)
			case tt.in != -1 && at.Sub(t0) != tt.in:
				t.Errorf("in %v, want %v", at.Sub(t0), tt.in)
			}
		})
	}
}

type harness struct {
	cs    *fake.Clientset
	c     *Controller
	clock *clocktesting.FakeClock
	f     informers.SharedInformerFactory
}

func newHarness(t *testing.T, rate float64, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{cs: fake.NewClientset(objs...), clock: clocktesting.NewFakeClock(t0)}
	h.f = informers.NewSharedInformerFactory(h.cs, 0)
	c, err := New(Config{Client: h.cs, Factory: h.f, Clock: h.clock, GracePeriod: 40 * time.Second, EvictionRate: rate})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	for _, o := range objs {
		h.cache(o)
	}
	return h
}

func (h *harness) cache(o runtime.Object) {
	switch o := o.(type) {
	case *corev1.Node:
		_ = h.f.Core().V1().Nodes().Informer().GetIndexer().Update(o)
	case *corev1.Pod:
		_ = h.f.Core().V1().Pods().Informer().GetIndexer().Update(o)
	case *coordinationv1.Lease:
		_ = h.f.Coordination().V1().Leases().Informer().GetIndexer().Update(o)
	}
}

// sync reconciles node and returns the verbs/resources it wrote.
func (h *harness) sync(t *testing.T, node string) (time.Duration, []string) {
	t.Helper()
	h.cs.ClearActions()
	d, err := h.c.Reconcile(context.Background(), node)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range h.cs.Actions() {
		if a.GetVerb() == "get" || a.GetVerb() == "list" || a.GetVerb() == "watch" {
			continue
		}
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
	}
	return d, out
}

func readyNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.NewTime(t0)}}}}
}

func lease(name string, renew time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: LeaseNamespace},
		Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renew}}}
}

func TestReconcileLeaseStops(t *testing.T) {
	n := readyNode("n1")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "p1"}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	h := newHarness(t, 0.1, n, lease("n1", t0), pod)

	d, acts := h.sync(t, "n1")
	if len(acts) != 0 || d <= 39*time.Second || d > 41*time.Second {
		t.Fatalf("healthy node: requeue %v, actions %v", d, acts)
	}
	// The lease renews: the clock restarts.
	h.clock.Step(30 * time.Second)
	h.cache(lease("n1", t0.Add(30*time.Second)))
	if d, _ := h.sync(t, "n1"); d <= 39*time.Second {
		t.Fatalf("after renewal: requeue %v", d)
	}
	// Silence past the grace period: conditions go Unknown.
	h.clock.Step(41 * time.Second)
	_, acts = h.sync(t, "n1")
	if len(acts) != 1 || acts[0] != "update nodes/status" {
		t.Fatalf("actions %v, want the node status", acts)
	}
	upd := h.cs.Actions()[len(h.cs.Actions())-1].(k8stesting.UpdateAction).GetObject().(*corev1.Node)
	h.cache(upd)
	// Pods marked not ready, node tainted.
	_, acts = h.sync(t, "n1")
	if len(acts) != 2 || acts[0] != "update pods/status" || acts[1] != "update nodes/" {
		t.Fatalf("actions %v, want pod status and node taint", acts)
	}
	notReady := h.cs.Actions()[0].(k8stesting.UpdateAction).GetObject().(*corev1.Pod)
	if podstate.Ready(notReady) {
		t.Fatalf("pod still ready: %+v", notReady.Status)
	}
	h.cache(notReady)
	tainted := h.cs.Actions()[len(h.cs.Actions())-1].(k8stesting.UpdateAction).GetObject().(*corev1.Node)
	if len(tainted.Spec.Taints) != 1 || tainted.Spec.Taints[0].Key != corev1.TaintNodeUnreachable {
		t.Fatalf("taints %+v", tainted.Spec.Taints)
	}
	h.cache(tainted)
	// The pod has no toleration: evicted at once.
	_, acts = h.sync(t, "n1")
	if len(acts) != 1 || acts[0] != "delete pods/" {
		t.Fatalf("actions %v, want the pod deleted", acts)
	}
	// The kubelet comes back: taint removed.
	back := tainted.DeepCopy()
	back.Status = readyNode("n1").Status
	back.Status.Conditions[0].LastHeartbeatTime = metav1.NewTime(h.clock.Now())
	h.cache(back)
	h.cache(lease("n1", h.clock.Now()))
	_, acts = h.sync(t, "n1")
	if len(acts) != 1 || acts[0] != "update nodes/" {
		t.Fatalf("actions %v, want the taint removed", acts)
	}
	if got := h.cs.Actions()[len(h.cs.Actions())-1].(k8stesting.UpdateAction).GetObject().(*corev1.Node); len(got.Spec.Taints) != 0 {
		t.Fatalf("taints %+v", got.Spec.Taints)
	}
}

func TestReconcileRateLimitsTaints(t *testing.T) {
	unknown := func(name string) *corev1.Node {
		n := readyNode(name)
		n.Status.Conditions[0].Status, n.Status.Conditions[0].Reason = corev1.ConditionUnknown, reasonUnknown
		return n
	}
	h := newHarness(t, 0.1, unknown("a"), unknown("b"), lease("a", t0), lease("b", t0))
	if _, acts := h.sync(t, "a"); len(acts) != 1 || acts[0] != "update nodes/" {
		t.Fatalf("a: %v, want tainted", acts)
	}
	d, acts := h.sync(t, "b")
	if len(acts) != 0 || d != 10*time.Second {
		t.Fatalf("b: %v, requeue %v; want none and 10s", acts, d)
	}
	h.clock.Step(10 * time.Second)
	if _, acts := h.sync(t, "b"); len(acts) != 1 || acts[0] != "update nodes/" {
		t.Fatalf("b after 10s: %v, want tainted", acts)
	}
}
