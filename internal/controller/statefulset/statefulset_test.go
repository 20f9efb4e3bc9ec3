package statefulset

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/controller/history"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func statefulSet(n int32, mod ...func(*appsv1.StatefulSet)) *appsv1.StatefulSet {
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "set-uid", Generation: 1},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &n, ServiceName: "nginx",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:2"}}}},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr(int32(0))}},
		},
	}
	for _, m := range mod {
		m(set)
	}
	return set
}

// pod is web-<ord> at revision rev ("cur" or "upd"), in state "" (pending),
// "ready", "failed" or "terminating".
func pod(ord int, rev, state string) *corev1.Pod {
	name := fmt.Sprintf("web-%d", ord)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name),
		Labels: map[string]string{"app": "web", history.HashLabel: rev, PodNameLabel: name, PodIndexLabel: fmt.Sprint(ord)}}}
	switch state {
	case "ready", "terminating":
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Minute))}}
		if state == "terminating" {
			p.DeletionTimestamp = ptr(metav1.NewTime(t0))
		}
	case "failed":
		p.Status.Phase = corev1.PodFailed
	default:
		p.Status.Phase = corev1.PodPending
	}
	return p
}

func newWorld(set *appsv1.StatefulSet, pods ...*corev1.Pod) *world {
	cur := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "cur"}}
	upd := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "upd"}}
	curTmpl := set.Spec.Template.DeepCopy()
	curTmpl.Spec.Containers[0].Image = "img:1"
	return &world{set: set, pods: pods, current: cur, update: upd, currentTemplate: curTmpl, updateTemplate: &set.Spec.Template, now: t0}
}

// describe renders a plan as "+web-1(img:2) -web-3 ~web-0".
func describe(p plan) string {
	var out []string
	for _, c := range p.create {
		out = append(out, fmt.Sprintf("+%s(%s)", c.Name, c.Spec.Containers[0].Image))
	}
	for _, d := range p.del {
		out = append(out, "-"+d.Name)
	}
	for _, r := range p.relabel {
		out = append(out, "~"+r.Name)
	}
	return strings.Join(out, " ")
}

func TestDecide(t *testing.T) {
	parallel := func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }
	onDelete := func(s *appsv1.StatefulSet) {
		s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	}
	part := func(n int32) func(*appsv1.StatefulSet) {
		return func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = &n }
	}
	for _, tc := range []struct {
		name string
		w    *world
		want string
	}{
		{"ordered: first pod", newWorld(statefulSet(3)), "+web-0(img:2)"},
		{"ordered: waits for web-0 to be ready", newWorld(statefulSet(3), pod(0, "upd", "")), ""},
		{"ordered: next after ready predecessor", newWorld(statefulSet(3), pod(0, "upd", "ready")), "+web-1(img:2)"},
		{"ordered: fills a gap first", newWorld(statefulSet(3), pod(0, "upd", "ready"), pod(2, "upd", "ready")), "+web-1(img:2)"},
		{"parallel: all at once", newWorld(statefulSet(3, parallel)), "+web-0(img:2) +web-1(img:2) +web-2(img:2)"},
		{"parallel: does not wait for readiness", newWorld(statefulSet(3, parallel), pod(0, "upd", "")), "+web-1(img:2) +web-2(img:2)"},
		{"ordered: scale down highest first", newWorld(statefulSet(1),
			pod(0, "upd", "ready"), pod(1, "upd", "ready"), pod(2, "upd", "ready")), "-web-2"},
		{"ordered: scale down waits for termination", newWorld(statefulSet(1),
			pod(0, "upd", "ready"), pod(1, "upd", "ready"), pod(2, "upd", "terminating")), ""},
		{"ordered: scale down waits for the remaining pods to be healthy", newWorld(statefulSet(1),
			pod(0, "upd", ""), pod(1, "upd", "ready")), ""},
		{"parallel: scale down all at once", newWorld(statefulSet(1, parallel),
			pod(0, "upd", "ready"), pod(1, "upd", "ready"), pod(2, "upd", "ready")), "-web-2 -web-1"},
		{"failed pod is replaced", newWorld(statefulSet(2), pod(0, "upd", "failed"), pod(1, "upd", "ready")), "-web-0"},
		{"missing identity labels are set", newWorld(statefulSet(1), func() *corev1.Pod {
			p := pod(0, "upd", "ready")
			delete(p.Labels, PodIndexLabel)
			return p
		}()), "~web-0"},
		{"rolling update: highest ordinal first", newWorld(statefulSet(3),
			pod(0, "cur", "ready"), pod(1, "cur", "ready"), pod(2, "cur", "ready")), "-web-2"},
		{"rolling update: next once the updated pod is healthy", newWorld(statefulSet(3),
			pod(0, "cur", "ready"), pod(1, "cur", "ready"), pod(2, "upd", "ready")), "-web-1"},
		{"rolling update: waits for the replaced pod to go", newWorld(statefulSet(3),
			pod(0, "cur", "ready"), pod(1, "cur", "terminating"), pod(2, "upd", "ready")), ""},
		{"rolling update: replaced pod is recreated at the update revision", newWorld(statefulSet(3),
			pod(0, "cur", "ready"), pod(2, "upd", "ready")), "+web-1(img:2)"},
		{"partition: pods below it stay, and are recreated at the current revision", newWorld(statefulSet(3, part(2)),
			pod(1, "cur", "ready"), pod(2, "upd", "ready")), "+web-0(img:1)"},
		{"partition: done", newWorld(statefulSet(3, part(2)),
			pod(0, "cur", "ready"), pod(1, "cur", "ready"), pod(2, "upd", "ready")), ""},
		{"OnDelete: old pods stay", newWorld(statefulSet(2, onDelete), pod(0, "cur", "ready"), pod(1, "cur", "ready")), ""},
		{"OnDelete: a deleted pod comes back at the update revision", newWorld(statefulSet(2, onDelete), pod(0, "cur", "ready")), "+web-1(img:2)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := decide(tc.w)
			if got := describe(p); got != tc.want {
				t.Errorf("plan %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    *world
		want appsv1.StatefulSetStatus
	}{
		{"mid rollout", newWorld(statefulSet(3), pod(0, "cur", "ready"), pod(1, "cur", ""), pod(2, "upd", "ready")),
			appsv1.StatefulSetStatus{Replicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 2, UpdatedReplicas: 1,
				CurrentRevision: "cur", UpdateRevision: "upd", ObservedGeneration: 1}},
		{"rolled out: current becomes update", newWorld(statefulSet(2), pod(0, "upd", "ready"), pod(1, "upd", "ready")),
			appsv1.StatefulSetStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 2, UpdatedReplicas: 2,
				CurrentRevision: "upd", UpdateRevision: "upd", ObservedGeneration: 1}},
		{"terminating pods count as replicas, not as current or updated", newWorld(statefulSet(1), pod(0, "cur", "ready"), pod(1, "upd", "terminating")),
			appsv1.StatefulSetStatus{Replicas: 2, ReadyReplicas: 2, AvailableReplicas: 2, CurrentReplicas: 1,
				CurrentRevision: "cur", UpdateRevision: "upd", ObservedGeneration: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := decide(tc.w)
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("status\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestNewPodIdentity(t *testing.T) {
	set := statefulSet(3)
	p := newPod(set, &set.Spec.Template, 2, "web-abc")
	if p.Name != "web-2" || p.GenerateName != "" || p.Spec.Hostname != "web-2" || p.Spec.Subdomain != "nginx" {
		t.Errorf("name %q generateName %q hostname %q subdomain %q", p.Name, p.GenerateName, p.Spec.Hostname, p.Spec.Subdomain)
	}
	want := map[string]string{"app": "web", PodNameLabel: "web-2", PodIndexLabel: "2", history.HashLabel: "web-abc"}
	if fmt.Sprint(p.Labels) != fmt.Sprint(want) {
		t.Errorf("labels %v, want %v", p.Labels, want)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.Kind != "StatefulSet" || ref.UID != set.UID {
		t.Errorf("owner %+v", p.OwnerReferences)
	}
	if ordinal(set, p) != 2 || ordinal(set, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "webx-2"}}) != -1 {
		t.Error("ordinal parsing")
	}
}

// TestReconcileRevisions runs syncs over a fake API: the first records a
// revision and creates web-0; a template change adds an update revision
// while status keeps the current one.
func TestReconcileRevisions(t *testing.T) {
	set := statefulSet(2)
	client := fake.NewClientset(set)
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
	if _, err := c.Reconcile(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	pods, _ := client.CoreV1().Pods("ns").List(ctx, metav1.ListOptions{})
	got, _ := client.AppsV1().StatefulSets("ns").Get(ctx, "web", metav1.GetOptions{})
	if len(pods.Items) != 1 || pods.Items[0].Name != "web-0" || pods.Items[0].Labels[history.HashLabel] != got.Status.UpdateRevision {
		t.Fatalf("pods %+v, status %+v", pods.Items, got.Status)
	}
	if got.Status.CurrentRevision != got.Status.UpdateRevision || got.Status.ObservedGeneration != 1 {
		t.Errorf("status %+v", got.Status)
	}
	first := got.Status.UpdateRevision

	got.Spec.Template.Spec.Containers[0].Image = "img:3"
	got.Generation = 2
	if _, err := client.AppsV1().StatefulSets("ns").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Wait for the informers to see the new generation and the first
	// revision: the fake API answers at once, watches deliver shortly after.
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := c.setLister.StatefulSets("ns").Get("web")
		if err == nil && s.Generation == 2 && len(c.revs.Indexer.List()) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("informers never saw generation 2 and the first revision")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := c.Reconcile(ctx, "ns/web"); err != nil {
		t.Fatal(err)
	}
	got, _ = client.AppsV1().StatefulSets("ns").Get(ctx, "web", metav1.GetOptions{})
	if got.Status.CurrentRevision != first || got.Status.UpdateRevision == first {
		t.Errorf("status %+v, want current %s and a new update revision", got.Status, first)
	}
	revs, _ := client.AppsV1().ControllerRevisions("ns").List(ctx, metav1.ListOptions{})
	var nums []string
	for _, r := range revs.Items {
		nums = append(nums, fmt.Sprintf("%s=%d", r.Name, r.Revision))
	}
	sort.Strings(nums)
	if len(revs.Items) != 2 || !slices.Contains(nums, got.Status.UpdateRevision+"=2") {
		t.Errorf("revisions %v", nums)
	}
}
