package statefulset_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/statefulset"
)

// journal records, in the API server's order, what happened to the pods:
// "+web-0" created, "ready web-0", "stop web-0" deletion started,
// "-web-0" gone.
type journal struct {
	mu      sync.Mutex
	entries []string
	ready   map[string]bool
	stop    map[string]bool
}

func (j *journal) follow(ctx context.Context, t *testing.T, cs kubernetes.Interface) {
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	j.ready, j.stop = map[string]bool{}, map[string]bool{}
	go func() {
		defer w.Stop()
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			j.mu.Lock()
			switch ev.Type {
			case watch.Added:
				j.entries = append(j.entries, "+"+p.Name)
			case watch.Deleted:
				j.entries = append(j.entries, "-"+p.Name)
				delete(j.ready, p.Name)
				delete(j.stop, p.Name)
			case watch.Modified:
				if p.DeletionTimestamp != nil && !j.stop[p.Name] {
					j.stop[p.Name] = true
					j.entries = append(j.entries, "stop "+p.Name)
				}
				if p.Status.Phase == corev1.PodRunning && !j.ready[p.Name] {
					j.ready[p.Name] = true
					j.entries = append(j.entries, "ready "+p.Name)
				}
			}
			j.mu.Unlock()
		}
	}()
}

func (j *journal) snapshot() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// before checks that a happened, and before b if b happened at all.
func before(t *testing.T, entries []string, a, b string) {
	t.Helper()
	i, k := slices.Index(entries, a), slices.Index(entries, b)
	if i < 0 || (k >= 0 && k < i) {
		t.Errorf("want %q before %q in %v", a, b, entries)
	}
}

// rolledOut is kubectl rollout status's verdict on a RollingUpdate
// StatefulSet with a partition.
func rolledOut(s *appsv1.StatefulSet) bool {
	return s.Status.ObservedGeneration != 0 && s.Generation <= s.Status.ObservedGeneration &&
		s.Status.ReadyReplicas >= *s.Spec.Replicas &&
		s.Status.UpdatedReplicas >= *s.Spec.Replicas-*s.Spec.UpdateStrategy.RollingUpdate.Partition
}

func TestStatefulSetOrdered(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory := informers.NewSharedInformerFactory(cs, 0)
	c, err := statefulset.New(statefulset.Config{Client: cs, Factory: factory, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, factory, c)
	var j journal
	j.follow(ctx, t, cs)
	go controllertest.Nodes(ctx, cs, "default", func(*corev1.Pod) string { return "n1" })

	three := int32(3)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &three, ServiceName: "nginx",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:1"}}}},
		},
	}
	sets := cs.AppsV1().StatefulSets("default")
	if _, err := sets.Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	podNames := func() []string {
		pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		var out []string
		for _, p := range pods.Items {
			out = append(out, p.Name)
		}
		slices.Sort(out)
		return out
	}
	settled := func(n int) func() (bool, string) {
		return func() (bool, string) {
			s, err := sets.Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return rolledOut(s) && s.Status.Replicas == int32(n) && len(podNames()) == n,
				fmt.Sprintf("status %+v, pods %v", s.Status, podNames())
		}
	}
	controllertest.Eventually(t, "web-0, web-1, web-2 running, rolled out", settled(3))
	entries := j.snapshot()
	before(t, entries, "ready web-0", "+web-1")
	before(t, entries, "ready web-1", "+web-2")

	p, err := cs.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Hostname != "web-1" || p.Spec.Subdomain != "nginx" ||
		p.Labels["statefulset.kubernetes.io/pod-name"] != "web-1" || p.Labels["apps.kubernetes.io/pod-index"] != "1" {
		t.Errorf("web-1: hostname %q subdomain %q labels %v", p.Spec.Hostname, p.Spec.Subdomain, p.Labels)
	}
	s, err := sets.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Status.CurrentRevision == "" || s.Status.CurrentRevision != s.Status.UpdateRevision || p.Labels["controller-revision-hash"] != s.Status.UpdateRevision {
		t.Errorf("revisions: status %+v, pod label %q", s.Status, p.Labels["controller-revision-hash"])
	}

	// Scale down to one: web-2 goes first, web-1 only once web-2 is gone.
	one := int32(1)
	s.Spec.Replicas = &one
	if _, err := sets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "scaled down to web-0", settled(1))
	if names := podNames(); !slices.Equal(names, []string{"web-0"}) {
		t.Errorf("pods %v", names)
	}
	entries = j.snapshot()
	before(t, entries, "-web-2", "stop web-1")
	if slices.Contains(entries, "stop web-0") {
		t.Errorf("web-0 was deleted: %v", entries)
	}

	// Back to three, then a new image rolls out highest ordinal first.
	if s, err = sets.Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = &three
	if s, err = sets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "scaled back to three", settled(3))
	if s, err = sets.Get(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	oldRevision := s.Status.CurrentRevision
	mark := len(j.snapshot())
	s.Spec.Template.Spec.Containers[0].Image = "img:2"
	if _, err := sets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "img:2 rolled out", func() (bool, string) {
		s, err := sets.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		ok, state := settled(3)()
		return ok && s.Status.UpdatedReplicas == 3 && s.Status.CurrentRevision == s.Status.UpdateRevision &&
			s.Status.UpdateRevision != oldRevision, state
	})
	rolled := j.snapshot()[mark:]
	before(t, rolled, "-web-2", "stop web-1")
	before(t, rolled, "-web-1", "stop web-0")
	before(t, rolled, "stop web-0", "")
	t.Logf("journal: %s; rolling update: %s", strings.Join(entries, ", "), strings.Join(rolled, ", "))
}
