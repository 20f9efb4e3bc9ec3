package daemonset

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/controller/history"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func node(name string, mod ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	for _, m := range mod {
		m(n)
	}
	return n
}

func taint(key string, effect corev1.TaintEffect) func(*corev1.Node) {
	return func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Effect: effect}) }
}

func label(k, v string) func(*corev1.Node) { return func(n *corev1.Node) { n.Labels[k] = v } }

func daemonSet(mod ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "ds-uid", Generation: 1},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:1"}}}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(1)), MaxSurge: ptr(intstr.FromInt32(0))}},
		},
	}
	for _, m := range mod {
		m(ds)
	}
	return ds
}

func ptr[T any](v T) *T { return &v }

func TestShouldRun(t *testing.T) {
	affinity := func(op corev1.NodeSelectorOperator, vals ...string) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: op, Values: vals}}}}}}}
		}
	}
	tolerate := func(key string, effect corev1.TaintEffect) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.Tolerations = append(ds.Spec.Template.Spec.Tolerations,
				corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect})
		}
	}
	for _, tc := range []struct {
		name      string
		node      *corev1.Node
		ds        *appsv1.DaemonSet
		run, keep bool
	}{
		{"plain node", node("a"), daemonSet(), true, true},
		{"node selector matches", node("a", label("disk", "ssd")),
			daemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"} }), true, true},
		{"node selector does not match", node("a"),
			daemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"} }), false, false},
		{"required affinity matches", node("a", label("zone", "z1")), daemonSet(affinity(corev1.NodeSelectorOpIn, "z1", "z2")), true, true},
		{"required affinity does not match", node("a", label("zone", "z3")), daemonSet(affinity(corev1.NodeSelectorOpIn, "z1")), false, false},
		{"NoSchedule taint: no new pod, old one stays", node("a", taint("dedicated", corev1.TaintEffectNoSchedule)), daemonSet(), false, true},
		{"NoExecute taint: no pod at all", node("a", taint("dedicated", corev1.TaintEffectNoExecute)), daemonSet(), false, false},
		{"PreferNoSchedule taint is ignored", node("a", taint("dedicated", corev1.TaintEffectPreferNoSchedule)), daemonSet(), true, true},
		{"tolerated taint", node("a", taint("dedicated", corev1.TaintEffectNoSchedule)),
			daemonSet(tolerate("dedicated", corev1.TaintEffectNoSchedule)), true, true},
		{"default toleration: cordoned", node("a", taint(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)), daemonSet(), true, true},
		{"default toleration: not ready", node("a", taint(corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute)), daemonSet(), true, true},
		{"default toleration: unreachable", node("a", taint(corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)), daemonSet(), true, true},
		{"default toleration: memory pressure", node("a", taint(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule)), daemonSet(), true, true},
		{"network unavailable: only host network pods", node("a", taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), daemonSet(), false, true},
		{"network unavailable, host network", node("a", taint(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)),
			daemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.HostNetwork = true }), true, true},
		{"template names another node", node("a"), daemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeName = "b" }), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, keep := shouldRun(tc.node, tc.ds)
			if run != tc.run || keep != tc.keep {
				t.Errorf("shouldRun = %v, %v; want %v, %v", run, keep, tc.run, tc.keep)
			}
		})
	}
}

// pod is a daemon pod on node; state is "" (pending), "ready" or "failed";
// updated pods carry the current hash "new".
func pod(name, nodeName string, updated bool, state string, age time.Duration) *corev1.Pod {
	hash := "old"
	if updated {
		hash = "new"
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name),
		Labels: map[string]string{"app": "agent", history.HashLabel: hash}, CreationTimestamp: metav1.NewTime(t0.Add(-age))},
		Spec: corev1.PodSpec{NodeName: nodeName}}
	switch state {
	case "ready":
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Minute))}}
	case "failed":
		p.Status.Phase = corev1.PodFailed
	default:
		p.Status.Phase = corev1.PodPending
	}
	return p
}

func names(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func TestDecide(t *testing.T) {
	surge := func(n int32) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr(intstr.FromInt32(0)), MaxSurge: ptr(intstr.FromInt32(n))}
		}
	}
	unavailable := func(v intstr.IntOrString) func(*appsv1.DaemonSet) {
		return func(ds *appsv1.DaemonSet) { ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &v }
	}
	onDelete := func(ds *appsv1.DaemonSet) {
		ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	}
	three := []*corev1.Node{node("a"), node("b"), node("c")}
	for _, tc := range []struct {
		name       string
		ds         *appsv1.DaemonSet
		nodes      []*corev1.Node
		pods       []*corev1.Pod
		backoff    map[string]time.Duration
		wantCreate []string
		wantDelete []string
		// wantFailedOn are the nodes whose back-off grows; wantRetry when
		// a back-off ends.
		wantFailedOn []string
		wantRetry    time.Duration
	}{
		{name: "fresh: one pod per node", ds: daemonSet(), nodes: three, wantCreate: []string{"a", "b", "c"}},
		{name: "tainted node skipped", ds: daemonSet(),
			nodes: []*corev1.Node{node("a"), node("b", taint("gpu", corev1.TaintEffectNoSchedule)), node("c")}, wantCreate: []string{"a", "c"}},
		{name: "steady state", ds: daemonSet(), nodes: three,
			pods: []*corev1.Pod{pod("pa", "a", true, "ready", 3), pod("pb", "b", true, "ready", 2), pod("pc", "c", true, "ready", 1)}},
		{name: "failed pod deleted (replaced once gone), duplicate removed (oldest stays)", ds: daemonSet(), nodes: three,
			pods: []*corev1.Pod{pod("pa", "a", true, "failed", 3), pod("pb", "b", true, "ready", 2), pod("pb2", "b", true, "ready", 1),
				pod("pc", "c", true, "ready", 1)},
			wantDelete: []string{"pa", "pb2"}, wantFailedOn: []string{"a"}},
		{name: "failed pod left alone during back-off", ds: daemonSet(), nodes: three, backoff: map[string]time.Duration{"a": 4 * time.Second},
			pods:      []*corev1.Pod{pod("pa", "a", true, "failed", 3), pod("pb", "b", true, "ready", 2), pod("pc", "c", true, "ready", 1)},
			wantRetry: 4 * time.Second},
		{name: "misscheduled: label gone", ds: daemonSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"x": "y"} }),
			nodes: []*corev1.Node{node("a", label("x", "y")), node("b")},
			pods:  []*corev1.Pod{pod("pa", "a", true, "ready", 3), pod("pb", "b", true, "ready", 2)}, wantDelete: []string{"pb"}},
		{name: "NoExecute taint evicts, NoSchedule keeps", ds: daemonSet(),
			nodes: []*corev1.Node{node("a", taint("x", corev1.TaintEffectNoExecute)), node("b", taint("x", corev1.TaintEffectNoSchedule))},
			pods:  []*corev1.Pod{pod("pa", "a", true, "ready", 3), pod("pb", "b", true, "ready", 2)}, wantDelete: []string{"pa"}},
		{name: "node gone", ds: daemonSet(), nodes: []*corev1.Node{node("a")},
			pods: []*corev1.Pod{pod("pa", "a", true, "ready", 3), pod("pz", "z", true, "ready", 2)}, wantDelete: []string{"pz"}},
		{name: "rolling: one old pod at a time", ds: daemonSet(), nodes: three,
			pods:       []*corev1.Pod{pod("pa", "a", false, "ready", 3), pod("pb", "b", false, "ready", 2), pod("pc", "c", false, "ready", 1)},
			wantDelete: []string{"pa"}},
		{name: "rolling: waits while a new pod is unavailable", ds: daemonSet(), nodes: three,
			pods: []*corev1.Pod{pod("pa", "a", true, "", 0), pod("pb", "b", false, "ready", 2), pod("pc", "c", false, "ready", 1)}},
		{name: "rolling: a missing pod counts as unavailable", ds: daemonSet(), nodes: three,
			pods:       []*corev1.Pod{pod("pb", "b", false, "ready", 2), pod("pc", "c", false, "ready", 1)},
			wantCreate: []string{"a"}},
		{name: "rolling: unavailable old pods go at once", ds: daemonSet(), nodes: three,
			pods:       []*corev1.Pod{pod("pa", "a", false, "", 3), pod("pb", "b", false, "", 2), pod("pc", "c", false, "ready", 1)},
			wantDelete: []string{"pa", "pb"}},
		{name: "rolling: maxUnavailable 100%", ds: daemonSet(unavailable(intstr.FromString("100%"))), nodes: three,
			pods:       []*corev1.Pod{pod("pa", "a", false, "ready", 3), pod("pb", "b", false, "ready", 2), pod("pc", "c", false, "ready", 1)},
			wantDelete: []string{"pa", "pb", "pc"}},
		{name: "surge: new pods next to old ones", ds: daemonSet(surge(2)), nodes: three,
			pods:       []*corev1.Pod{pod("pa", "a", false, "ready", 3), pod("pb", "b", false, "ready", 2), pod("pc", "c", false, "ready", 1)},
			wantCreate: []string{"a", "b"}},
		{name: "surge: old pod goes once new is available; waits on unavailable", ds: daemonSet(surge(1)), nodes: three,
			pods: []*corev1.Pod{pod("pa", "a", false, "ready", 3), pod("pa2", "a", true, "ready", 0),
				pod("pb", "b", false, "ready", 2), pod("pb2", "b", true, "", 0), pod("pc", "c", false, "ready", 1)},
			wantDelete: []string{"pa"}},
		{name: "OnDelete: old pods stay", ds: daemonSet(onDelete), nodes: three,
			pods: []*corev1.Pod{pod("pa", "a", false, "ready", 3), pod("pb", "b", false, "ready", 2)}, wantCreate: []string{"c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &world{ds: tc.ds, nodes: tc.nodes, byNode: map[string][]*corev1.Pod{}, hash: "new", now: t0,
				backoff: func(node string) time.Duration { return tc.backoff[node] }}
			for _, p := range tc.pods {
				w.byNode[targetNode(p)] = append(w.byNode[targetNode(p)], p)
			}
			p := decide(w)
			if !slices.Equal(p.createOn, tc.wantCreate) {
				t.Errorf("create on %v, want %v", p.createOn, tc.wantCreate)
			}
			if got := names(p.del); !slices.Equal(got, tc.wantDelete) {
				t.Errorf("delete %v, want %v", got, tc.wantDelete)
			}
			if !slices.Equal(p.failedOn, tc.wantFailedOn) || p.retryAfter != tc.wantRetry {
				t.Errorf("failed on %v, retry after %v; want %v, %v", p.failedOn, p.retryAfter, tc.wantFailedOn, tc.wantRetry)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	ds := daemonSet(func(ds *appsv1.DaemonSet) { ds.Generation = 4 })
	nodes := []*corev1.Node{node("a"), node("b"), node("c"), node("d", taint("x", corev1.TaintEffectNoSchedule))}
	w := &world{ds: ds, nodes: nodes, hash: "new", now: t0, byNode: map[string][]*corev1.Pod{
		"a": {pod("pa", "a", true, "ready", 3)},
		"b": {pod("pb", "b", false, "ready", 2)},
		"d": {pod("pd", "d", true, "", 2)},
	}}
	got := status(w)
	want := appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2,
		UpdatedNumberScheduled: 1, NumberMisscheduled: 1, NumberUnavailable: 1, ObservedGeneration: 4}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("status\n got %+v\nwant %+v", got, want)
	}
}

func TestNewPod(t *testing.T) {
	ds := daemonSet(func(ds *appsv1.DaemonSet) {
		ds.Annotations = map[string]string{appsv1.DeprecatedTemplateGeneration: "2"}
		ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}
	})
	p := newPod(ds, "node-1", "h1")
	if targetNode(p) != "node-1" || p.Spec.NodeName != "" {
		t.Errorf("pod pinned to %q (nodeName %q), want affinity to node-1", targetNode(p), p.Spec.NodeName)
	}
	if p.Labels[history.HashLabel] != "h1" || p.Labels[templateGenerationLabel] != "2" || p.GenerateName != "agent-" {
		t.Errorf("labels %v, generateName %q", p.Labels, p.GenerateName)
	}
	if len(p.Spec.Tolerations) != len(defaultTolerations) {
		t.Errorf("tolerations %v: want the %d defaults once each", p.Spec.Tolerations, len(defaultTolerations))
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != ds.UID || ref.Kind != "DaemonSet" {
		t.Errorf("owner %+v", p.OwnerReferences)
	}
	if ds.Spec.Template.Spec.Affinity != nil || ds.Spec.Template.Labels[history.HashLabel] != "" {
		t.Error("newPod changed the DaemonSet's template")
	}
}

// TestReconcileCreatesRevisionAndPods runs one sync over a fake API.
func TestReconcileCreatesRevisionAndPods(t *testing.T) {
	ds := daemonSet()
	client := fake.NewClientset(ds, node("a"), node("b"))
	n := 0
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		n++
		p.Name = fmt.Sprintf("%s%d", p.GenerateName, n)
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Client: client, Factory: f, Clock: clocktesting.NewFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	defer f.Shutdown()
	defer cancel()
	f.WaitForCacheSync(ctx.Done())
	if _, err := c.Reconcile(ctx, "ns/agent"); err != nil {
		t.Fatal(err)
	}
	revs, _ := client.AppsV1().ControllerRevisions("ns").List(ctx, metav1.ListOptions{})
	if len(revs.Items) != 1 || revs.Items[0].Revision != 1 {
		t.Fatalf("revisions %+v", revs.Items)
	}
	hash := revs.Items[0].Labels[history.HashLabel]
	pods, _ := client.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	var on []string
	for i := range pods.Items {
		if pods.Items[i].Labels[history.HashLabel] != hash {
			t.Errorf("pod labels %v, want hash %s", pods.Items[i].Labels, hash)
		}
		on = append(on, targetNode(&pods.Items[i]))
	}
	sort.Strings(on)
	if !slices.Equal(on, []string{"a", "b"}) {
		t.Errorf("pods on %v", on)
	}
	got, _ := client.AppsV1().DaemonSets("ns").Get(ctx, "agent", metav1.GetOptions{})
	if got.Status.DesiredNumberScheduled != 2 || got.Status.ObservedGeneration != 1 {
		t.Errorf("status %+v", got.Status)
	}
}
