package queue

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Unix(1_000_000, 0)

func pod(name string, prio int32, created time.Duration) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec: v1.PodSpec{Priority: &prio}}
}

func newQueue() (*Queue, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(t0)
	return New(Options{Clock: clk}), clk
}

func popName(t *testing.T, q *Queue) string {
	t.Helper()
	qp, err := q.Pop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return qp.Pod.Name
}

func TestOrderByPriorityThenCreation(t *testing.T) {
	q, _ := newQueue()
	q.Add(pod("low-old", 0, 0))
	q.Add(pod("high-new", 100, 3*time.Second))
	q.Add(pod("high-old", 100, time.Second))
	q.Add(pod("low-new", 0, 2*time.Second))
	q.Add(pod("mid", 50, 9*time.Second))
	var got []string
	for i := 0; i < 5; i++ {
		got = append(got, popName(t, q))
	}
	want := "[high-old high-new mid low-old low-new]"
	if fmt.Sprint(got) != want {
		t.Errorf("order %v, want %s", got, want)
	}
}

func TestUnschedulableWaitsForEvent(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0, 0))
	qp, _ := q.Pop(context.Background())
	q.AddUnschedulable(qp)
	clk.Step(time.Minute)
	q.Flush()
	if s := q.Stats(); s.Unschedulable != 1 || s.Active != 0 {
		t.Fatalf("pod retried without an event: %+v", s)
	}
	q.MoveAllToActiveOrBackoff(nil)
	if s := q.Stats(); s.Active != 1 {
		t.Fatalf("event did not move the pod (back-off long over): %+v", s)
	}
}

func TestMoveDuringBackoffGoesToBackoff(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0, 0))
	qp, _ := q.Pop(context.Background())
	q.AddUnschedulable(qp)
	q.MoveAllToActiveOrBackoff(nil) // immediately: the 1s back-off still runs
	if s := q.Stats(); s.Backoff != 1 || s.Active != 0 {
		t.Fatalf("want back-off: %+v", s)
	}
	clk.Step(999 * time.Millisecond)
	q.Flush()
	if s := q.Stats(); s.Active != 0 {
		t.Fatalf("left back-off early: %+v", s)
	}
	clk.Step(time.Millisecond)
	q.Flush()
	if s := q.Stats(); s.Active != 1 {
		t.Fatalf("back-off over but not active: %+v", s)
	}
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0, 0))
	var waits []time.Duration
	for attempt := 1; attempt <= 6; attempt++ {
		qp, _ := q.Pop(context.Background())
		if qp.Attempts != attempt {
			t.Fatalf("attempts %d, want %d", qp.Attempts, attempt)
		}
		q.AddBackoff(qp)
		start := clk.Now()
		for q.Stats().Active == 0 {
			clk.Step(100 * time.Millisecond)
			q.Flush()
		}
		waits = append(waits, clk.Now().Sub(start))
	}
	want := "[1s 2s 4s 8s 10s 10s]"
	if fmt.Sprint(waits) != want {
		t.Errorf("back-offs %v, want %s", waits, want)
	}
}

func TestEventWhileInFlightSkipsUnschedulableSet(t *testing.T) {
	q, _ := newQueue()
	q.Add(pod("p", 0, 0))
	qp, _ := q.Pop(context.Background())
	q.MoveAllToActiveOrBackoff(nil) // e.g. a node was added during the cycle
	q.AddUnschedulable(qp)
	if s := q.Stats(); s.Unschedulable != 0 || s.Backoff != 1 {
		t.Fatalf("pod would miss the event: %+v", s)
	}
}

func TestUpdateOfUnschedulablePod(t *testing.T) {
	q, _ := newQueue()
	p := pod("p", 0, 0)
	q.Add(p)
	qp, _ := q.Pop(context.Background())
	q.AddUnschedulable(qp)

	status := p.DeepCopy()
	status.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse}}
	q.Update(status)
	if s := q.Stats(); s.Unschedulable != 1 {
		t.Fatalf("status-only update moved the pod: %+v", s)
	}
	spec := status.DeepCopy()
	spec.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	q.Update(spec)
	if s := q.Stats(); s.Unschedulable != 0 || s.Active+s.Backoff != 1 {
		t.Fatalf("spec update did not requeue: %+v", s)
	}
}

func TestUpdateAndDeleteWhileInFlight(t *testing.T) {
	q, _ := newQueue()
	q.Add(pod("a", 0, 0))
	q.Add(pod("b", 0, time.Second))
	a, _ := q.Pop(context.Background())
	b, _ := q.Pop(context.Background())
	upd := a.Pod.DeepCopy()
	upd.Labels = map[string]string{"x": "y"}
	q.Update(upd)
	q.Delete(b.Pod)
	if s := q.Stats(); s.Active != 0 {
		t.Fatalf("in-flight pod re-added: %+v", s)
	}
	q.AddUnschedulable(a)
	q.AddUnschedulable(b)
	if s := q.Stats(); s.Backoff != 1 || s.Unschedulable != 0 || s.InFlight != 0 {
		t.Fatalf("want updated pod in back-off and deleted pod gone: %+v", s)
	}
	if a.Pod.Labels["x"] != "y" {
		t.Error("requeued pod is not the latest version")
	}
}

func TestLeftoverUnschedulableFlushed(t *testing.T) {
	q, clk := newQueue()
	q.Add(pod("p", 0, 0))
	qp, _ := q.Pop(context.Background())
	q.AddUnschedulable(qp)
	clk.Step(DefaultMaxUnschedulable)
	q.Flush()
	if q.Stats().Unschedulable != 1 {
		t.Fatal("flushed too early")
	}
	clk.Step(time.Second)
	q.Flush()
	if q.Stats().Active != 1 {
		t.Fatalf("not flushed: %+v", q.Stats())
	}
}

func TestMoveWithPredicate(t *testing.T) {
	q, clk := newQueue()
	for _, n := range []string{"aff", "cpu"} {
		q.Add(pod(n, 0, 0))
		qp, _ := q.Pop(context.Background())
		if n == "aff" {
			qp.UnschedulablePlugins = map[string]struct{}{"InterPodAffinity": {}}
		}
		q.AddUnschedulable(qp)
	}
	clk.Step(time.Minute)
	q.MoveAllToActiveOrBackoff(func(qp *QueuedPod) bool { _, ok := qp.UnschedulablePlugins["InterPodAffinity"]; return ok })
	if s := q.Stats(); s.Active != 1 || s.Unschedulable != 1 {
		t.Fatalf("%+v", s)
	}
	if name := popName(t, q); name != "aff" {
		t.Errorf("moved %s", name)
	}
}

func TestPopBlocksUntilAddAndStopsOnClose(t *testing.T) {
	q, _ := newQueue()
	got := make(chan string)
	go func() {
		qp, err := q.Pop(context.Background())
		if err != nil {
			got <- err.Error()
			return
		}
		got <- qp.Pod.Name
	}()
	q.Add(pod("late", 0, 0))
	if n := <-got; n != "late" {
		t.Fatalf("got %s", n)
	}
	errc := make(chan error)
	go func() { _, err := q.Pop(context.Background()); errc <- err }()
	q.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	q2, _ := newQueue()
	go func() { _, err := q2.Pop(ctx); errc <- err }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestEventWhileInFlightOnlyAffectsMatchingPods(t *testing.T) {
	q, _ := newQueue()
	q.Add(pod("aff", 0, 0))
	q.Add(pod("cpu", 0, time.Second))
	aff, _ := q.Pop(context.Background())
	cpu, _ := q.Pop(context.Background())
	aff.UnschedulablePlugins = map[string]struct{}{"InterPodAffinity": {}}
	cpu.UnschedulablePlugins = map[string]struct{}{"NodeResourcesFit": {}}
	// A pod was placed: only affinity failures may be helped.
	q.MoveAllToActiveOrBackoff(func(qp *QueuedPod) bool { _, ok := qp.UnschedulablePlugins["InterPodAffinity"]; return ok })
	q.AddUnschedulable(aff)
	q.AddUnschedulable(cpu)
	if s := q.Stats(); s.Backoff != 1 || s.Unschedulable != 1 {
		t.Fatalf("%+v", s)
	}
	// Events before a pod was popped do not count for it.
	q.MoveAllToActiveOrBackoff(nil)
	q.Add(pod("late", 0, 2*time.Second))
	late, _ := q.Pop(context.Background())
	q.AddUnschedulable(late)
	if s := q.Stats(); s.Unschedulable != 1 {
		t.Fatalf("late pod not parked: %+v", s)
	}
}
