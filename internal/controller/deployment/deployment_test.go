package deployment

import (
	"context"
	"fmt"
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
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// world is a fake cluster: the Deployment controller over a fake
// clientset, and a ReplicaSet "controller" that makes a ReplicaSet's pods
// exist at once and available one step after they were created.
type world struct {
	t      *testing.T
	client *fake.Clientset
	ctrl   *Controller
	clock  *clocktesting.FakeClock
	uids   int
	// fresh counts each ReplicaSet's pods created this step (not yet available).
	fresh map[string]int32
}

func newWorld(t *testing.T, d *appsv1.Deployment) *world {
	t.Helper()
	w := &world{t: t, client: fake.NewClientset(d), clock: clocktesting.NewFakeClock(t0), fresh: map[string]int32{}}
	w.client.PrependReactor("create", "replicasets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rs := a.(k8stesting.CreateAction).GetObject().(*appsv1.ReplicaSet)
		w.uids++
		rs.UID = types.UID(fmt.Sprintf("rs-uid-%d", w.uids))
		rs.CreationTimestamp = metav1.NewTime(w.clock.Now().Add(time.Duration(w.uids) * time.Millisecond))
		rs.Generation = 1
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(w.client, 0)
	c, err := New(Config{Client: w.client, Factory: f, Clock: w.clock})
	if err != nil {
		t.Fatal(err)
	}
	w.ctrl = c
	w.syncCaches()
	return w
}

func (w *world) deployment() *appsv1.Deployment {
	d, err := w.client.AppsV1().Deployments("ns").Get(context.Background(), "web", metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

func (w *world) replicaSets() []*appsv1.ReplicaSet {
	l, err := w.client.AppsV1().ReplicaSets("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	out := make([]*appsv1.ReplicaSet, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	byCreation(out)
	return out
}

// syncCaches copies the fake API's state into the informer caches.
func (w *world) syncCaches() {
	dIdx := w.ctrl.cfg.Factory.Apps().V1().Deployments().Informer().GetIndexer()
	if err := dIdx.Replace([]any{w.deployment()}, ""); err != nil {
		w.t.Fatal(err)
	}
	var rss []any
	for _, rs := range w.replicaSets() {
		rss = append(rss, rs)
	}
	if err := w.ctrl.rsIndexer.Replace(rss, ""); err != nil {
		w.t.Fatal(err)
	}
}

// simulate plays the ReplicaSet controller and the kubelets: pods exist at
// once; pods created in an earlier step are available; removed pods go at once.
func (w *world) simulate() {
	for _, rs := range w.replicaSets() {
		want := rsReplicas(rs)
		st := rs.Status
		avail := min(st.AvailableReplicas+w.fresh[rs.Name], want)
		w.fresh[rs.Name] = max(0, want-st.Replicas)
		if want < st.Replicas {
			w.fresh[rs.Name] = 0
		}
		rs.Status = appsv1.ReplicaSetStatus{Replicas: want, FullyLabeledReplicas: want, ReadyReplicas: avail,
			AvailableReplicas: avail, ObservedGeneration: rs.Generation}
		if _, err := w.client.AppsV1().ReplicaSets("ns").UpdateStatus(context.Background(), rs, metav1.UpdateOptions{}); err != nil {
			w.t.Fatal(err)
		}
	}
	w.syncCaches()
}

func (w *world) reconcile() time.Duration {
	w.t.Helper()
	requeue, err := w.ctrl.Reconcile(context.Background(), "ns/web")
	if err != nil {
		w.t.Fatalf("reconcile: %v", err)
	}
	w.syncCaches()
	return requeue
}

func newDeployment(replicas int32, surge, unavailable string) *appsv1.Deployment {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "d-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:1"}}}},
			Strategy:                appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			RevisionHistoryLimit:    ptr(int32(10)),
			ProgressDeadlineSeconds: ptr(int32(600)),
		},
	}
	if surge != "" {
		s, u := intstr.Parse(surge), intstr.Parse(unavailable)
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u}}
	}
	return d
}

func ptr[T any](v T) *T { return &v }

// setImage changes the template as kubectl set image would.
func (w *world) update(f func(d *appsv1.Deployment)) {
	d := w.deployment()
	f(d)
	d.Generation++
	if _, err := w.client.AppsV1().Deployments("ns").Update(context.Background(), d, metav1.UpdateOptions{}); err != nil {
		w.t.Fatal(err)
	}
	w.syncCaches()
}

func setImage(img string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = img }
}

// rolloutStatus is kubectl rollout status's verdict on a Deployment.
func rolloutStatus(d *appsv1.Deployment) (string, bool) {
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...", false
	}
	if c := getCondition(&d.Status, appsv1.DeploymentProgressing); c != nil && c.Reason == ReasonTimedOut {
		return "exceeded its progress deadline", true
	}
	switch {
	case d.Status.UpdatedReplicas < replicas(d.Spec.Replicas):
		return fmt.Sprintf("%d out of %d new replicas have been updated...", d.Status.UpdatedReplicas, replicas(d.Spec.Replicas)), false
	case d.Status.Replicas > d.Status.UpdatedReplicas:
		return fmt.Sprintf("%d old replicas are pending termination...", d.Status.Replicas-d.Status.UpdatedReplicas), false
	case d.Status.AvailableReplicas < d.Status.UpdatedReplicas:
		return fmt.Sprintf("%d of %d updated replicas are available...", d.Status.AvailableReplicas, d.Status.UpdatedReplicas), false
	}
	return "successfully rolled out", true
}

// rollOut reconciles and simulates until kubectl rollout status would be
// done, calling check after every reconcile.
func (w *world) rollOut(check func(step int)) int {
	w.t.Helper()
	for step := 0; step < 100; step++ {
		w.reconcile()
		if check != nil {
			check(step)
		}
		w.simulate()
		if msg, done := rolloutStatus(w.deployment()); done {
			if msg != "successfully rolled out" {
				w.t.Fatalf("rollout ended with %q", msg)
			}
			return step
		}
	}
	w.t.Fatalf("rollout did not finish in 100 steps: %+v", w.deployment().Status)
	return 0
}

func TestRollingUpdateBounds(t *testing.T) {
	tests := []struct {
		replicas               int32
		surge, unavailable     string
		maxTotal, minAvailable int32
	}{
		{replicas: 10, surge: "25%", unavailable: "25%", maxTotal: 13, minAvailable: 8},
		{replicas: 3, surge: "1", unavailable: "0", maxTotal: 4, minAvailable: 3},
		{replicas: 3, surge: "0", unavailable: "1", maxTotal: 3, minAvailable: 2},
		{replicas: 4, surge: "100%", unavailable: "0", maxTotal: 8, minAvailable: 4},
		{replicas: 5, surge: "0%", unavailable: "10%", maxTotal: 5, minAvailable: 4}, // both round to 0: one may be unavailable
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-surge%s-unavailable%s", tt.replicas, tt.surge, tt.unavailable), func(t *testing.T) {
			w := newWorld(t, newDeployment(tt.replicas, tt.surge, tt.unavailable))
			w.rollOut(nil)
			rss := w.replicaSets()
			if len(rss) != 1 || rsReplicas(rss[0]) != tt.replicas {
				t.Fatalf("after the first rollout: %d replicasets, want 1 at %d", len(rss), tt.replicas)
			}
			first := rss[0]
			hash := first.Labels[HashLabel]
			if first.Name != "web-"+hash || first.Spec.Selector.MatchLabels[HashLabel] != hash || first.Spec.Template.Labels[HashLabel] != hash {
				t.Fatalf("replicaset %s: hash label %q missing from name, selector or template", first.Name, hash)
			}
			if ref := metav1.GetControllerOf(first); ref == nil || ref.UID != "d-uid" || !*ref.BlockOwnerDeletion {
				t.Fatalf("replicaset owner refs %+v", first.OwnerReferences)
			}
			if Revision(first) != 1 || w.deployment().Annotations[RevisionAnnotation] != "1" {
				t.Fatalf("revision rs %d, deployment %q; want 1", Revision(first), w.deployment().Annotations[RevisionAnnotation])
			}

			w.update(setImage("img:2"))
			steps := w.rollOut(func(step int) {
				rss := w.replicaSets()
				var total int32
				for _, rs := range rss {
					total += rsReplicas(rs)
				}
				if total > tt.maxTotal {
					t.Fatalf("step %d: %d pods wanted, more than replicas+maxSurge = %d", step, total, tt.maxTotal)
				}
				// Pods of scaled-down replica sets go at once in this world.
				var left int32
				for _, rs := range rss {
					left += min(rs.Status.AvailableReplicas, rsReplicas(rs))
				}
				if left < tt.minAvailable {
					t.Fatalf("step %d: %d pods available, fewer than replicas-maxUnavailable = %d", step, left, tt.minAvailable)
				}
			})
			rss = w.replicaSets()
			if len(rss) != 2 || rsReplicas(rss[0]) != 0 || rsReplicas(rss[1]) != tt.replicas {
				t.Fatalf("after the update: want old at 0 and new at %d, got %v", tt.replicas, sizes(rss))
			}
			if Revision(rss[1]) != 2 || w.deployment().Annotations[RevisionAnnotation] != "2" {
				t.Fatalf("new revision %d, deployment %q; want 2", Revision(rss[1]), w.deployment().Annotations[RevisionAnnotation])
			}
			d := w.deployment()
			if c := getCondition(&d.Status, appsv1.DeploymentProgressing); c == nil || c.Reason != ReasonNewRSAvailable || c.Status != corev1.ConditionTrue {
				t.Fatalf("Progressing %+v, want True NewReplicaSetAvailable", c)
			}
			if c := getCondition(&d.Status, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue {
				t.Fatalf("Available %+v, want True", c)
			}
			if d.Status.UnavailableReplicas != 0 || d.Status.UpdatedReplicas != tt.replicas {
				t.Fatalf("status %+v", d.Status)
			}
			t.Logf("rolled out in %d steps", steps)
		})
	}
}

func sizes(rss []*appsv1.ReplicaSet) string {
	s := ""
	for _, rs := range rss {
		s += fmt.Sprintf("%s=%d/%d ", rs.Spec.Template.Spec.Containers[0].Image, rsReplicas(rs), rs.Status.AvailableReplicas)
	}
	return s
}

func TestRecreate(t *testing.T) {
	w := newWorld(t, newDeployment(3, "", ""))
	w.rollOut(nil)
	w.update(setImage("img:2"))
	w.rollOut(func(step int) {
		var oldPods, newPods int32
		for _, rs := range w.replicaSets() {
			if rs.Spec.Template.Spec.Containers[0].Image == "img:1" {
				oldPods += max(rsReplicas(rs), rs.Status.Replicas)
			} else {
				newPods += rsReplicas(rs)
			}
		}
		if oldPods > 0 && newPods > 0 {
			t.Fatalf("step %d: old (%d) and new (%d) pods at once under Recreate", step, oldPods, newPods)
		}
	})
	if got := sizes(w.replicaSets()); got != "img:1=0/0 img:2=3/3 " {
		t.Fatalf("replicasets %s", got)
	}
}

func TestRollbackRevisionsAndHistoryLimit(t *testing.T) {
	d := newDeployment(2, "1", "0")
	d.Spec.RevisionHistoryLimit = ptr(int32(1))
	w := newWorld(t, d)
	w.rollOut(nil)
	firstTemplate := w.deployment().Spec.Template
	w.update(setImage("img:2"))
	w.rollOut(nil)
	// kubectl rollout undo copies revision 1's template back.
	w.update(func(d *appsv1.Deployment) { d.Spec.Template = firstTemplate })
	w.rollOut(nil)
	rss := w.replicaSets()
	if len(rss) != 2 {
		t.Fatalf("%d replicasets, want 2 (history limit 1)", len(rss))
	}
	back := rss[0]
	if back.Spec.Template.Spec.Containers[0].Image != "img:1" || rsReplicas(back) != 2 {
		t.Fatalf("rolled back replicaset %s", sizes(rss))
	}
	if Revision(back) != 3 || back.Annotations[RevisionHistoryAnnotation] != "1" {
		t.Fatalf("rolled back replicaset revision %d history %q, want 3 and \"1\"", Revision(back), back.Annotations[RevisionHistoryAnnotation])
	}
	if got := w.deployment().Annotations[RevisionAnnotation]; got != "3" {
		t.Fatalf("deployment revision %q, want 3", got)
	}
	// One more revision: the limit deletes the oldest empty one.
	w.update(setImage("img:3"))
	w.rollOut(nil)
	w.reconcile()
	if got := sizes(w.replicaSets()); got != "img:1=0/0 img:3=2/2 " {
		t.Fatalf("after cleanup: %s, want the img:2 replicaset deleted", got)
	}
}

func TestPausedDoesNotRollOut(t *testing.T) {
	w := newWorld(t, newDeployment(2, "1", "0"))
	w.rollOut(nil)
	w.update(func(d *appsv1.Deployment) { d.Spec.Paused = true; d.Spec.Template.Spec.Containers[0].Image = "img:2" })
	for i := 0; i < 3; i++ {
		w.reconcile()
		w.simulate()
	}
	if n := len(w.replicaSets()); n != 1 {
		t.Fatalf("%d replicasets while paused, want 1", n)
	}
	d := w.deployment()
	if c := getCondition(&d.Status, appsv1.DeploymentProgressing); c == nil || c.Reason != ReasonPaused || c.Status != corev1.ConditionUnknown {
		t.Fatalf("Progressing %+v, want Unknown DeploymentPaused", c)
	}
	if d.Status.ObservedGeneration != d.Generation {
		t.Fatalf("observedGeneration %d, want %d", d.Status.ObservedGeneration, d.Generation)
	}
	w.update(func(d *appsv1.Deployment) { d.Spec.Paused = false })
	w.rollOut(nil)
	if got := sizes(w.replicaSets()); got != "img:1=0/0 img:2=2/2 " {
		t.Fatalf("after resume: %s", got)
	}
}

func TestProportionalScalingMidRollout(t *testing.T) {
	w := newWorld(t, newDeployment(10, "3", "2"))
	w.rollOut(nil)
	w.update(setImage("img:2"))
	w.reconcile()
	w.simulate()
	before := w.replicaSets()
	if rsReplicas(before[0]) == 0 || rsReplicas(before[1]) == 0 {
		t.Fatalf("want both replicasets active mid-rollout: %s", sizes(before))
	}
	w.update(func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(20)) })
	w.reconcile()
	after := w.replicaSets()
	total := rsReplicas(after[0]) + rsReplicas(after[1])
	if total != 23 {
		t.Fatalf("after scaling to 20: %s, want 23 pods (20 + surge 3)", sizes(after))
	}
	if rsReplicas(after[0]) <= rsReplicas(before[0]) || rsReplicas(after[1]) <= rsReplicas(before[1]) {
		t.Fatalf("scaling was not proportional: before %s after %s", sizes(before), sizes(after))
	}
	w.rollOut(nil)
	if got := sizes(w.replicaSets()); got != "img:1=0/0 img:2=20/20 " {
		t.Fatalf("final: %s", got)
	}
}

func TestProgressDeadline(t *testing.T) {
	d := newDeployment(2, "1", "0")
	d.Spec.ProgressDeadlineSeconds = ptr(int32(60))
	w := newWorld(t, d)
	w.reconcile() // creates the replica set; no pod ever becomes available
	requeue := w.reconcile()
	if requeue <= 0 || requeue > 62*time.Second {
		t.Fatalf("requeue %v, want about the 60s deadline", requeue)
	}
	w.clock.Step(61 * time.Second)
	w.reconcile()
	got := w.deployment()
	c := getCondition(&got.Status, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != ReasonTimedOut || c.Status != corev1.ConditionFalse {
		t.Fatalf("Progressing %+v, want False ProgressDeadlineExceeded", c)
	}
	if msg, done := rolloutStatus(got); !done || msg != "exceeded its progress deadline" {
		t.Fatalf("rollout status %q", msg)
	}
}

func TestComputeHash(t *testing.T) {
	a := newDeployment(1, "", "").Spec.Template
	b := *a.DeepCopy()
	b.Spec.Containers[0].Image = "img:2"
	if ComputeHash(&a, nil) == ComputeHash(&b, nil) {
		t.Fatal("different templates hash alike")
	}
	if ComputeHash(&a, nil) != ComputeHash(a.DeepCopy(), nil) {
		t.Fatal("the hash is not stable")
	}
	if ComputeHash(&a, nil) == ComputeHash(&a, ptr(int32(1))) {
		t.Fatal("the collision count does not change the hash")
	}
	withHash := *a.DeepCopy()
	withHash.Labels[HashLabel] = "abc"
	if !EqualIgnoreHash(&a, &withHash) || EqualIgnoreHash(&a, &b) {
		t.Fatal("EqualIgnoreHash")
	}
}
