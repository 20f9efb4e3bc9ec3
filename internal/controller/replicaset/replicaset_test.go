package replicaset

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/controller/expectations"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	t      *testing.T
	client *fake.Clientset
	ctrl   *Controller
	clock  *clocktesting.FakeClock
	names  atomic.Int32
}

// newHarness builds a controller over a fake clientset whose informer
// caches hold objs (the informers never run: the cache is what the test
// says it is, like a slow watch).
func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fake.NewClientset(objs...), clock: clocktesting.NewFakeClock(t0)}
	h.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.Name == "" {
			p.Name = fmt.Sprintf("%s%05d", p.GenerateName, h.names.Add(1))
			p.UID = types.UID("uid-" + p.Name)
		}
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(h.client, 0)
	c, err := New(Config{Client: h.client, Factory: f, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	h.ctrl = c
	for _, o := range objs {
		h.cache(o)
	}
	return h
}

func (h *harness) cache(o runtime.Object) {
	var err error
	switch o := o.(type) {
	case *corev1.Pod:
		err = h.ctrl.podIndexer.Add(o)
	case *appsv1.ReplicaSet:
		err = h.ctrl.rsIndexer.Add(o)
	}
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) reconcile(key string) (time.Duration, error) {
	h.client.ClearActions()
	return h.ctrl.Reconcile(context.Background(), key)
}

func (h *harness) actions(verb, resource string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range h.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && a.GetSubresource() == "" {
			out = append(out, a)
		}
	}
	return out
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("rs-" + name), Generation: 1},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, "tier": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}},
	}
}

type podOpt func(*corev1.Pod)

func newPod(name string, owner *appsv1.ReplicaSet, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
		Labels: map[string]string{"app": "web", "tier": "web"}, CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	if owner != nil {
		p.Labels["app"] = owner.Spec.Selector.MatchLabels["app"]
		p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(owner, Kind)}
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func onNode(n string) podOpt { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func phase(ph corev1.PodPhase) podOpt {
	return func(p *corev1.Pod) { p.Status.Phase = ph }
}
func readySince(t time.Time) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = "n1"
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t)}}
	}
}
func restarts(n int32) podOpt {
	return func(p *corev1.Pod) {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: n}}
	}
}
func created(t time.Time) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t) }
}
func labelsOf(l map[string]string) podOpt { return func(p *corev1.Pod) { p.Labels = l } }

func TestCreatesPodsWithOwnerAndExpectations(t *testing.T) {
	rs := newRS("web", 3)
	h := newHarness(t, rs)
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	creates := h.actions("create", "pods")
	if len(creates) != 3 {
		t.Fatalf("created %d pods, want 3", len(creates))
	}
	for _, a := range creates {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.GenerateName != "web-" {
			t.Errorf("generateName %q, want web-", p.GenerateName)
		}
		if p.Labels["tier"] != "web" || p.Labels["app"] != "web" {
			t.Errorf("labels %v, want the template's", p.Labels)
		}
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" ||
			ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("owner reference %+v, want a blocking controller ref to the replicaset", p.OwnerReferences)
		}
	}
	if adds, _ := h.ctrl.exp.Pending("ns/web"); adds != 3 {
		t.Fatalf("pending creations %d, want 3", adds)
	}
	// The watch is slow: the cache still shows no pods. No more creations.
	for i := 0; i < 3; i++ {
		if _, err := h.reconcile("ns/web"); err != nil {
			t.Fatal(err)
		}
		if n := len(h.actions("create", "pods")); n != 0 {
			t.Fatalf("resync %d with a stale cache created %d pods, want 0", i, n)
		}
	}
	// The pods arrive: expectations are met and nothing more is created.
	list, _ := h.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	for i := range list.Items {
		p := &list.Items[i]
		h.cache(p)
		h.ctrl.onPodAdd(p)
	}
	if !h.ctrl.exp.Satisfied("ns/web") {
		t.Fatal("expectations not satisfied after the creations were observed")
	}
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.actions("create", "pods")) + len(h.actions("delete", "pods")); n != 0 {
		t.Fatalf("synced replicaset wrote %d pods, want 0", n)
	}
	got, _ := h.client.AppsV1().ReplicaSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if got.Status.Replicas != 3 || got.Status.FullyLabeledReplicas != 3 || got.Status.ObservedGeneration != 1 {
		t.Fatalf("status %+v, want replicas 3, fullyLabeled 3, observedGeneration 1", got.Status)
	}
}

func TestExpectationsExpire(t *testing.T) {
	h := newHarness(t, newRS("web", 2))
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(expectations.DefaultTTL + time.Second)
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.actions("create", "pods")); n != 2 {
		t.Fatalf("after the TTL the controller created %d pods, want 2 (it trusts its cache again)", n)
	}
}

func TestDeletesPreferredPods(t *testing.T) {
	rs := newRS("web", 2)
	pods := []*corev1.Pod{
		newPod("old-ready", rs, readySince(t0.Add(-2*time.Hour))),
		newPod("new-ready", rs, readySince(t0.Add(-time.Minute))),
		newPod("pending", rs, onNode("n1")),
		newPod("unscheduled", rs),
	}
	objs := []runtime.Object{rs}
	for _, p := range pods {
		objs = append(objs, p)
	}
	h := newHarness(t, objs...)
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, a := range h.actions("delete", "pods") {
		deleted = append(deleted, a.(k8stesting.DeleteAction).GetName())
	}
	if fmt.Sprint(sortStrings(deleted)) != "[pending unscheduled]" {
		t.Fatalf("deleted %v, want [pending unscheduled]", deleted)
	}
	if _, dels := h.ctrl.exp.Pending("ns/web"); dels != 2 {
		t.Fatalf("pending deletions %d, want 2", dels)
	}
	// Stale cache: no further deletions until observed.
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	if n := len(h.actions("delete", "pods")); n != 0 {
		t.Fatalf("stale resync deleted %d pods, want 0", n)
	}
	h.ctrl.onPodDelete(pods[2])
	h.ctrl.onPodDelete(pods[2]) // the same pod twice counts once
	if h.ctrl.exp.Satisfied("ns/web") {
		t.Fatal("satisfied after one of two deletions")
	}
	h.ctrl.onPodDelete(pods[3])
	if !h.ctrl.exp.Satisfied("ns/web") {
		t.Fatal("not satisfied after both deletions")
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func TestPodsToDeleteRanking(t *testing.T) {
	rs := newRS("web", 1)
	tests := []struct {
		name string
		pods []*corev1.Pod
		want string // the pod deleted first
	}{
		{"unscheduled before scheduled", []*corev1.Pod{newPod("a", rs, onNode("n1")), newPod("b", rs)}, "b"},
		{"pending before unknown", []*corev1.Pod{newPod("a", rs, onNode("n1"), phase(corev1.PodUnknown)), newPod("b", rs, onNode("n1"))}, "b"},
		{"unknown before running", []*corev1.Pod{newPod("a", rs, onNode("n1"), phase(corev1.PodRunning)), newPod("b", rs, onNode("n1"), phase(corev1.PodUnknown))}, "b"},
		{"not ready before ready", []*corev1.Pod{newPod("a", rs, readySince(t0)), newPod("b", rs, onNode("n1"), phase(corev1.PodRunning))}, "b"},
		{"lower deletion cost first", []*corev1.Pod{
			newPod("a", rs, readySince(t0), func(p *corev1.Pod) { p.Annotations = map[string]string{DeletionCostAnnotation: "10"} }),
			newPod("b", rs, readySince(t0.Add(-time.Hour)))}, "b"},
		{"crowded node first", []*corev1.Pod{
			newPod("a", rs, readySince(t0), onNode("n1")), newPod("b", rs, readySince(t0), onNode("n2")),
			newPod("c", rs, readySince(t0.Add(-time.Hour)), onNode("n2"))}, "b"},
		{"newer ready before older ready", []*corev1.Pod{newPod("a", rs, readySince(t0.Add(-time.Hour))), newPod("b", rs, readySince(t0))}, "b"},
		{"more restarts first", []*corev1.Pod{newPod("a", rs, readySince(t0), restarts(1)), newPod("b", rs, readySince(t0), restarts(5))}, "b"},
		{"newer before older", []*corev1.Pod{newPod("a", rs, readySince(t0), created(t0.Add(-time.Hour))), newPod("b", rs, readySince(t0), created(t0))}, "b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, order := range [][]*corev1.Pod{tt.pods, reverse(tt.pods)} {
				got := PodsToDelete(order, tt.pods, 1)
				if len(got) != 1 || got[0].Name != tt.want {
					t.Fatalf("deleted %s, want %s", got[0].Name, tt.want)
				}
			}
		})
	}
}

func reverse(p []*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, len(p))
	for i := range p {
		out[len(p)-1-i] = p[i]
	}
	return out
}

func TestClaimAdoptsAndReleases(t *testing.T) {
	rs := newRS("web", 2)
	orphan := newPod("orphan", nil, labelsOf(map[string]string{"app": "web"}))
	stray := newPod("stray", rs, labelsOf(map[string]string{"app": "other"}))
	foreign := newPod("foreign", nil, labelsOf(map[string]string{"app": "web"}), func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "x", UID: "x", Controller: ptr(true)}}
	})
	mine := newPod("mine", rs)
	h := newHarness(t, rs, orphan, stray, foreign, mine)
	if _, err := h.reconcile("ns/web"); err != nil {
		t.Fatal(err)
	}
	patched := map[string]string{}
	for _, a := range h.actions("patch", "pods") {
		pa := a.(k8stesting.PatchAction)
		patched[pa.GetName()] = string(pa.GetPatch())
	}
	if len(patched) != 2 {
		t.Fatalf("patched %v, want orphan (adopted) and stray (released)", patched)
	}
	o, _ := h.client.CoreV1().Pods("ns").Get(context.Background(), "orphan", metav1.GetOptions{})
	if ref := metav1.GetControllerOf(o); ref == nil || ref.UID != rs.UID {
		t.Fatalf("orphan owner refs %+v, want adopted", o.OwnerReferences)
	}
	s, _ := h.client.CoreV1().Pods("ns").Get(context.Background(), "stray", metav1.GetOptions{})
	if len(s.OwnerReferences) != 0 {
		t.Fatalf("stray owner refs %+v, want released", s.OwnerReferences)
	}
	if n := len(h.actions("create", "pods")); n != 0 {
		t.Fatalf("created %d pods; mine and the adopted orphan make 2", n)
	}
}

func ptr[T any](v T) *T { return &v }

func TestStatusAvailability(t *testing.T) {
	rs := newRS("web", 3)
	rs.Spec.MinReadySeconds = 10
	h := newHarness(t, rs,
		newPod("a", rs, readySince(t0.Add(-time.Minute))),
		newPod("b", rs, readySince(t0.Add(-4*time.Second))),
		newPod("c", rs, onNode("n1"), phase(corev1.PodRunning)),
		newPod("done", rs, phase(corev1.PodSucceeded)))
	requeue, err := h.reconcile("ns/web")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := h.client.AppsV1().ReplicaSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
	st := got.Status
	if st.Replicas != 3 || st.ReadyReplicas != 2 || st.AvailableReplicas != 1 {
		t.Fatalf("status replicas/ready/available %d/%d/%d, want 3/2/1", st.Replicas, st.ReadyReplicas, st.AvailableReplicas)
	}
	if requeue < 6*time.Second || requeue > 7*time.Second {
		t.Fatalf("requeue after %v, want ~6s when pod b becomes available", requeue)
	}
	if n := len(h.actions("create", "pods")); n != 0 {
		t.Fatalf("created %d pods; the succeeded pod does not count, but 3 active do", n)
	}
}

func TestCreateFailureSetsReplicaFailureAndSlowStarts(t *testing.T) {
	rs := newRS("web", 10)
	h := newHarness(t, rs)
	var attempts atomic.Int32
	h.client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		attempts.Add(1)
		return true, nil, errors.New("quota exceeded")
	})
	if _, err := h.reconcile("ns/web"); err == nil {
		t.Fatal("reconcile succeeded, want the creation error")
	}
	if n := attempts.Load(); n != 1 {
		t.Fatalf("%d creation attempts, want 1 (slow start stops after the first failed batch)", n)
	}
	if !h.ctrl.exp.Satisfied("ns/web") {
		t.Fatal("failed creations still expected")
	}
	got, _ := h.client.AppsV1().ReplicaSets("ns").Get(context.Background(), "web", metav1.GetOptions{})
	c := condition(got.Status.Conditions, appsv1.ReplicaSetReplicaFailure)
	if c == nil || c.Status != corev1.ConditionTrue || c.Reason != "FailedCreate" {
		t.Fatalf("conditions %+v, want ReplicaFailure=True FailedCreate", got.Status.Conditions)
	}
}

func TestSlowStartBatch(t *testing.T) {
	tests := []struct {
		count, failAt int // failAt: the call number (1-based) that fails; 0 none
		wantOK, calls int
	}{
		{count: 0, wantOK: 0, calls: 0},
		{count: 1, wantOK: 1, calls: 1},
		{count: 10, wantOK: 10, calls: 10},
		{count: 10, failAt: 1, wantOK: 0, calls: 1},
		{count: 10, failAt: 2, wantOK: 2, calls: 3},   // batches 1, 2
		{count: 10, failAt: 4, wantOK: 6, calls: 7},   // batches 1, 2, 4
		{count: 10, failAt: 10, wantOK: 9, calls: 10}, // batches 1, 2, 4, 3
	}
	for _, tt := range tests {
		var n atomic.Int32
		ok, err := SlowStartBatch(tt.count, 1, func() error {
			if int(n.Add(1)) == tt.failAt {
				return errors.New("fail")
			}
			return nil
		})
		if ok != tt.wantOK || int(n.Load()) != tt.calls || (err != nil) != (tt.failAt > 0) {
			t.Errorf("count %d fail at %d: ok %d calls %d err %v; want ok %d calls %d", tt.count, tt.failAt, ok, n.Load(), err, tt.wantOK, tt.calls)
		}
	}
}
