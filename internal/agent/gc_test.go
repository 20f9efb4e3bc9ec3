package agent

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

// gcRuntime is a fake runtime that collects garbage: it asks known about
// the pods in ask.
type gcRuntime struct {
	*fakeRuntime
	ask []types.UID

	mu    sync.Mutex
	runs  int
	known map[types.UID]bool
}

func (g *gcRuntime) GarbageCollect(_ context.Context, known func(types.UID) bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.runs++
	g.known = map[types.UID]bool{}
	for _, uid := range g.ask {
		g.known[uid] = known(uid)
	}
	return nil
}

// TestGarbageCollect checks that the heartbeat has the runtime collect
// garbage every GCInterval, once the pod watch has synced, and that the
// pods it knows are the node's pods in the watch and those the agent is
// still stopping.
func TestGarbageCollect(t *testing.T) {
	mine := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "mine", UID: "mine-uid"}, Spec: corev1.PodSpec{NodeName: "n1"}}
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other", UID: "other-uid"}, Spec: corev1.PodSpec{NodeName: "n2"}}
	client := fake.NewClientset(mine, other)
	clk := clocktesting.NewFakeClock(t0)
	gc := &gcRuntime{fakeRuntime: &fakeRuntime{}, ask: []types.UID{"mine-uid", "other-uid", "stopping-uid", "gone-uid"}}
	a, _ := newTestAgent(t, client, clk, func(c *Config) { c.Runtime = gc; c.GCInterval = 30 * time.Second })
	ctx := context.Background()
	if err := a.register(ctx); err != nil {
		t.Fatal(err)
	}
	a.pods.set("ns/stopping", &podRecord{uid: "stopping-uid", namespace: "ns", name: "stopping"})
	a.nextRenew, a.nextStatus, a.nextMetrics, a.nextGC = t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(time.Hour), t0.Add(30*time.Second)

	// no pod source yet, nothing adopted: no collection
	clk.Step(30 * time.Second)
	a.beat(ctx)
	if gc.runs != 0 {
		t.Fatalf("collected garbage %d times before the pod watch synced", gc.runs)
	}
	// the pod source as adopt leaves it (the fake clientset cannot run
	// the watch: its pods go straight into the cache)
	src := NewPodSource(PodSourceConfig{Client: client, NodeName: "n1", Logger: quietLogger()})
	for _, p := range []*corev1.Pod{mine, other} {
		if err := src.informer.GetStore().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	a.mu.Lock()
	a.src = src
	a.mu.Unlock()
	a.adopt(ctx, src)
	for i, step := range []time.Duration{10 * time.Second, 20 * time.Second, 10 * time.Second, 20 * time.Second} {
		clk.Step(step)
		a.beat(ctx)
		gc.mu.Lock()
		runs := gc.runs
		gc.mu.Unlock()
		if want := []int{0, 1, 1, 2}[i]; runs != want {
			t.Errorf("after beat %d: %d collections, want %d", i, runs, want)
		}
	}
	want := map[types.UID]bool{"mine-uid": true, "other-uid": false, "stopping-uid": true, "gone-uid": false}
	if !maps.Equal(gc.known, want) {
		t.Errorf("known pods %v, want %v", gc.known, want)
	}
}
