// Package queue is the scheduler's queue of pending pods: an active heap
// ordered by priority then creation time, a back-off heap for pods that
// failed recently, and a set of unschedulable pods that wait for a cluster
// event that may help them. Time is injected so that tests control it.
package queue

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Defaults, as upstream's.
const (
	DefaultInitialBackoff   = time.Second
	DefaultMaxBackoff       = 10 * time.Second
	DefaultMaxUnschedulable = 5 * time.Minute
	flushInterval           = time.Second
)

// ErrClosed is returned by Pop after Close.
var ErrClosed = errors.New("scheduling queue closed")

// QueuedPod is a pod in the queue with its scheduling history.
type QueuedPod struct {
	Pod *v1.Pod
	// Attempts counts scheduling attempts, including the current one.
	Attempts int
	// Timestamp is when the pod last entered the queue.
	Timestamp time.Time
	// InitialAttempt is when the pod was first popped.
	InitialAttempt time.Time
	// UnschedulablePlugins names the plugins that rejected the pod last.
	UnschedulablePlugins map[string]struct{}
	// Cycle is the scheduling cycle that popped the pod.
	Cycle int64
}

func priority(p *v1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// activeLess orders by priority (higher first), then creation time, then
// queue time.
func activeLess(a, b *QueuedPod) bool {
	pa, pb := priority(a.Pod), priority(b.Pod)
	if pa != pb {
		return pa > pb
	}
	ca, cb := a.Pod.CreationTimestamp.Time, b.Pod.CreationTimestamp.Time
	if !ca.Equal(cb) {
		return ca.Before(cb)
	}
	if !a.Timestamp.Equal(b.Timestamp) {
		return a.Timestamp.Before(b.Timestamp)
	}
	return a.Pod.UID < b.Pod.UID
}

// Options tune the queue; zero values take the defaults.
type Options struct {
	Clock            clock.WithTicker
	InitialBackoff   time.Duration
	MaxBackoff       time.Duration
	MaxUnschedulable time.Duration
}

// Queue is safe for concurrent use.
type Queue struct {
	mu   sync.Mutex
	cond *sync.Cond
	opts Options

	active        *podHeap
	backoff       *podHeap
	unschedulable map[types.UID]*QueuedPod
	// inFlight holds popped pods; true once updated or deleted meanwhile.
	inFlight map[types.UID]*inFlightPod

	cycle int64
	// moves are the events seen while pods were in flight: a pod that
	// fails afterwards and matches one is not parked as unschedulable.
	moves  []moveRequest
	closed bool
}

type moveRequest struct {
	cycle int64
	match func(*QueuedPod) bool
}

type inFlightPod struct {
	cycle   int64
	latest  *v1.Pod
	updated bool
	deleted bool
}

// New returns an empty queue.
func New(o Options) *Queue {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = DefaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxUnschedulable <= 0 {
		o.MaxUnschedulable = DefaultMaxUnschedulable
	}
	q := &Queue{opts: o, unschedulable: map[types.UID]*QueuedPod{}, inFlight: map[types.UID]*inFlightPod{}}
	q.cond = sync.NewCond(&q.mu)
	q.active = newPodHeap(activeLess)
	q.backoff = newPodHeap(func(a, b *QueuedPod) bool { return q.backoffExpiry(a).Before(q.backoffExpiry(b)) })
	return q
}

// backoffDuration doubles from InitialBackoff per failed attempt, capped.
func (q *Queue) backoffDuration(qp *QueuedPod) time.Duration {
	d := q.opts.InitialBackoff
	for i := 1; i < qp.Attempts; i++ {
		d *= 2
		if d >= q.opts.MaxBackoff {
			return q.opts.MaxBackoff
		}
	}
	return d
}

func (q *Queue) backoffExpiry(qp *QueuedPod) time.Time {
	return qp.Timestamp.Add(q.backoffDuration(qp))
}

func (q *Queue) isBackingOff(qp *QueuedPod) bool {
	return qp.Attempts > 0 && q.backoffExpiry(qp).After(q.opts.Clock.Now())
}

// Add enqueues a new pending pod, or updates it if already queued.
func (q *Queue) Add(pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.updateLocked(pod) {
		return
	}
	q.active.add(&QueuedPod{Pod: pod, Timestamp: q.opts.Clock.Now()})
	q.cond.Broadcast()
}

// Update records a change of a pending pod. An unschedulable pod whose
// spec, labels or annotations changed is retried.
func (q *Queue) Update(pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.updateLocked(pod) {
		q.active.add(&QueuedPod{Pod: pod, Timestamp: q.opts.Clock.Now()})
		q.cond.Broadcast()
	}
}

// updateLocked updates a pod wherever it is and reports whether it was.
func (q *Queue) updateLocked(pod *v1.Pod) bool {
	uid := pod.UID
	if f, ok := q.inFlight[uid]; ok {
		if changed(f.latest, pod) {
			f.updated = true
		}
		f.latest = pod
		return true
	}
	if qp := q.active.get(uid); qp != nil {
		qp.Pod = pod
		q.active.add(qp)
		return true
	}
	if qp := q.backoff.get(uid); qp != nil {
		qp.Pod = pod
		return true
	}
	if qp, ok := q.unschedulable[uid]; ok {
		old := qp.Pod
		qp.Pod = pod
		if changed(old, pod) {
			delete(q.unschedulable, uid)
			q.requeueLocked(qp)
		}
		return true
	}
	return false
}

// changed reports an update that may change the scheduling outcome.
func changed(old, pod *v1.Pod) bool {
	return !reflect.DeepEqual(old.Spec, pod.Spec) || !reflect.DeepEqual(old.Labels, pod.Labels) ||
		!reflect.DeepEqual(old.Annotations, pod.Annotations)
}

// requeueLocked puts a pod in back-off if its back-off runs, else active.
func (q *Queue) requeueLocked(qp *QueuedPod) {
	if q.isBackingOff(qp) {
		q.backoff.add(qp)
		return
	}
	q.active.add(qp)
	q.cond.Broadcast()
}

// Delete removes a pod from the queue.
func (q *Queue) Delete(pod *v1.Pod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if f, ok := q.inFlight[pod.UID]; ok {
		f.deleted = true
	}
	q.active.remove(pod.UID)
	q.backoff.remove(pod.UID)
	delete(q.unschedulable, pod.UID)
}

// Pop blocks until a pod is active, the context ends or the queue closes,
// and returns the most important active pod.
func (q *Queue) Pop(ctx context.Context) (*QueuedPod, error) {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.cond.Broadcast()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.active.Len() == 0 {
		if q.closed {
			return nil, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.cond.Wait()
	}
	qp := q.active.pop()
	qp.Attempts++
	q.cycle++
	qp.Cycle = q.cycle
	if qp.InitialAttempt.IsZero() {
		qp.InitialAttempt = q.opts.Clock.Now()
	}
	q.inFlight[qp.Pod.UID] = &inFlightPod{latest: qp.Pod, cycle: qp.Cycle}
	return qp, nil
}

// Done ends the attempt of a popped pod that is not requeued (bound, or
// dropped).
func (q *Queue) Done(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.inFlight, uid)
	q.trimMovesLocked()
}

// AddUnschedulable requeues a popped pod that fit nowhere. It waits for a
// cluster event, unless one arrived while it was being scheduled (or the pod
// itself changed), in which case it only backs off.
func (q *Queue) AddUnschedulable(qp *QueuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f, ok := q.inFlight[qp.Pod.UID]
	delete(q.inFlight, qp.Pod.UID)
	if ok {
		if f.deleted {
			return
		}
		qp.Pod = f.latest
	}
	qp.Timestamp = q.opts.Clock.Now()
	missed := ok && f.updated
	for _, m := range q.moves {
		if m.cycle >= qp.Cycle && (m.match == nil || m.match(qp)) {
			missed = true
			break
		}
	}
	q.trimMovesLocked()
	if missed {
		q.backoff.add(qp)
		return
	}
	q.unschedulable[qp.Pod.UID] = qp
}

// trimMovesLocked forgets events older than every pod in flight.
func (q *Queue) trimMovesLocked() {
	if len(q.inFlight) == 0 {
		q.moves = q.moves[:0]
		return
	}
	oldest := q.cycle
	for _, f := range q.inFlight {
		oldest = min(oldest, f.cycle)
	}
	k := 0
	for _, m := range q.moves {
		if m.cycle >= oldest {
			q.moves[k] = m
			k++
		}
	}
	q.moves = q.moves[:k]
}

// AddBackoff requeues a popped pod after an error; it is retried once its
// back-off ends.
func (q *Queue) AddBackoff(qp *QueuedPod) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f, ok := q.inFlight[qp.Pod.UID]
	delete(q.inFlight, qp.Pod.UID)
	q.trimMovesLocked()
	if ok {
		if f.deleted {
			return
		}
		qp.Pod = f.latest
	}
	qp.Timestamp = q.opts.Clock.Now()
	q.backoff.add(qp)
}

// MoveAllToActiveOrBackoff retries the unschedulable pods for which match
// returns true (all when match is nil), after a cluster event.
func (q *Queue) MoveAllToActiveOrBackoff(match func(*QueuedPod) bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for uid, qp := range q.unschedulable {
		if match == nil || match(qp) {
			delete(q.unschedulable, uid)
			q.requeueLocked(qp)
		}
	}
	if len(q.inFlight) > 0 {
		q.moves = append(q.moves, moveRequest{cycle: q.cycle, match: match})
	}
}

// Flush moves pods whose back-off ended to the active heap, and pods that
// waited longer than MaxUnschedulable for an event back into play.
func (q *Queue) Flush() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.opts.Clock.Now()
	moved := false
	for qp := q.backoff.peek(); qp != nil && !q.backoffExpiry(qp).After(now); qp = q.backoff.peek() {
		q.backoff.pop()
		q.active.add(qp)
		moved = true
	}
	for uid, qp := range q.unschedulable {
		if now.Sub(qp.Timestamp) > q.opts.MaxUnschedulable {
			delete(q.unschedulable, uid)
			q.requeueLocked(qp)
		}
	}
	if moved {
		q.cond.Broadcast()
	}
}

// Run flushes the queue every second until ctx ends, then closes it.
func (q *Queue) Run(ctx context.Context) {
	t := q.opts.Clock.NewTicker(flushInterval)
	defer t.Stop()
	defer q.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			q.Flush()
		}
	}
}

// Close wakes Pop callers with ErrClosed.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// Stats counts the pods in each part of the queue.
type Stats struct{ Active, Backoff, Unschedulable, InFlight int }

// Stats returns the current counts.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	return Stats{Active: q.active.Len(), Backoff: q.backoff.Len(), Unschedulable: len(q.unschedulable), InFlight: len(q.inFlight)}
}
