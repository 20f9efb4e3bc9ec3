// Package loop runs a level-based reconcile function over a rate-limited
// queue of object keys: informer handlers only enqueue keys, workers call
// Reconcile, errors retry with exponential back-off.
package loop

import (
	"context"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Reconciler brings the object named by key (namespace/name, or name for
// cluster-scoped objects) to its desired state. It must be idempotent and
// must not sleep: it returns requeueAfter > 0 to be called again later,
// and an error to be retried with back-off.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) (requeueAfter time.Duration, err error)
}

// Func adapts a function to Reconciler.
type Func func(ctx context.Context, key string) (time.Duration, error)

// Reconcile calls f.
func (f Func) Reconcile(ctx context.Context, key string) (time.Duration, error) { return f(ctx, key) }

// Back-off of failed keys.
const (
	baseDelay = 5 * time.Millisecond
	maxDelay  = 60 * time.Second
)

// Loop is a named work queue and the workers that drain it.
type Loop struct {
	name  string
	r     Reconciler
	log   *slog.Logger
	queue workqueue.TypedRateLimitingInterface[string]
}

// New returns a loop named name (used in logs and metrics) that calls r.
func New(name string, r Reconciler, log *slog.Logger) *Loop {
	if log == nil {
		log = slog.Default()
	}
	return &Loop{name: name, r: r, log: log,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](baseDelay, maxDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

// Add queues key now.
func (l *Loop) Add(key string) { l.queue.Add(key) }

// AddAfter queues key after d.
func (l *Loop) AddAfter(key string, d time.Duration) { l.queue.AddAfter(key, d) }

// Len is the number of keys waiting.
func (l *Loop) Len() int { return l.queue.Len() }

// Enqueue queues the key of an informer object (or of a deletion
// tombstone's object).
func (l *Loop) Enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		l.log.Warn("cannot compute key", "loop", l.name, "err", err)
		return
	}
	l.queue.Add(key)
}

// Handler is an informer event handler that enqueues every added, updated
// or deleted object.
func (l *Loop) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    l.Enqueue,
		UpdateFunc: func(_, obj any) { l.Enqueue(obj) },
		DeleteFunc: l.Enqueue,
	}
}

// Run starts workers goroutines and blocks until ctx ends; then it shuts
// the queue down and waits for the workers to finish their current key.
func (l *Loop) Run(ctx context.Context, workers int) {
	if workers < 1 {
		workers = 1
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	l.queue.ShutDown()
	wg.Wait()
}

func (l *Loop) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if ctx.Err() != nil {
		// Fenced: the context ended (leadership lost); act no more.
		return false
	}
	requeue, err := l.r.Reconcile(ctx, key)
	switch {
	case err != nil && ctx.Err() != nil:
		// The failure is the cancellation itself.
	case err != nil && apierrors.IsConflict(err):
		// A stale cache: normal, retried once the watch catches up.
		l.log.Debug("reconcile conflicted; will retry", "loop", l.name, "key", key, "err", err)
		l.queue.AddRateLimited(key)
	case err != nil:
		l.log.Warn("reconcile failed; will retry", "loop", l.name, "key", key, "retries", l.queue.NumRequeues(key), "err", err)
		l.queue.AddRateLimited(key)
	case requeue > 0:
		l.queue.Forget(key)
		l.queue.AddAfter(key, requeue)
	default:
		l.queue.Forget(key)
	}
	return true
}

// Next takes the next key off the queue without reconciling it, for
// tests that check what was queued; ok is false when the queue is shut.
func (l *Loop) Next() (key string, ok bool) {
	k, quit := l.queue.Get()
	if quit {
		return "", false
	}
	l.queue.Done(k)
	l.queue.Forget(k)
	return k, true
}
