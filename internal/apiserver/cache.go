package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-sh/skiff/internal/store"
)

// defaultHistory is how many recent events a cache keeps to serve watches
// that resume from an older resourceVersion.
const defaultHistory = 10000

// maxWatcherBacklog is how many undelivered events a slow watcher may have
// before it is closed (its client then re-watches from its last version).
const maxWatcherBacklog = 20000

// errTooOld means a watch asked for a version older than the cache's history.
var errTooOld = errors.New("too old resource version")

// cacheEvent is one change of a cached object.
type cacheEvent struct {
	typ  watch.EventType
	key  string
	obj  runtime.Object // the new object; for Deleted the last state
	prev runtime.Object // the previous object; nil for Added
	rv   int64
}

// watchCache mirrors one storage prefix of etcd in memory, fed by an etcd
// watch, and fans its changes out to API watchers.
type watchCache struct {
	prefix  string
	history int // events kept
	st      *store.Store
	decode  func(store.KV) (runtime.Object, error)
	log     *slog.Logger

	mu       sync.RWMutex
	cond     *sync.Cond
	items    map[string]runtime.Object
	rv       int64
	floor    int64 // watches from versions >= floor can be served
	events   []cacheEvent
	watchers map[*cacheWatcher]struct{}
	ready    bool
	progress func() // asks etcd for a progress notification on this watch
}

func newWatchCache(prefix string, history int, st *store.Store, decode func(store.KV) (runtime.Object, error), log *slog.Logger) *watchCache {
	if history <= 0 {
		history = defaultHistory
	}
	c := &watchCache{prefix: prefix, history: history, st: st, decode: decode, log: log,
		items: map[string]runtime.Object{}, watchers: map[*cacheWatcher]struct{}{}}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// run lists and watches the prefix until ctx ends, re-listing when the
// etcd watch fails.
func (c *watchCache) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := c.listAndWatch(ctx)
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("watch cache restarts", "prefix", c.prefix, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	c.mu.Lock()
	for w := range c.watchers {
		w.stop()
	}
	c.watchers = map[*cacheWatcher]struct{}{}
	c.mu.Unlock()
}

func (c *watchCache) listAndWatch(ctx context.Context) error {
	kvs, rev, _, err := c.st.List(ctx, c.prefix, "", 0, 0)
	if err != nil {
		return err
	}
	items := make(map[string]runtime.Object, len(kvs))
	for _, kv := range kvs {
		obj, err := c.decode(kv)
		if err != nil {
			c.log.Error("cannot decode stored object; skipped", "key", kv.Key, "err", err)
			continue
		}
		items[kv.Key] = obj
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, werr := c.st.Watch(wctx, c.prefix, rev)

	c.mu.Lock()
	// Watchers that started before this (re)list may have missed events.
	for w := range c.watchers {
		w.stop()
	}
	c.watchers = map[*cacheWatcher]struct{}{}
	c.items = items
	c.rv = rev
	c.floor = rev
	c.events = c.events[:0]
	c.ready = true
	c.progress = func() { _ = c.st.RequestProgress(wctx) }
	c.cond.Broadcast()
	c.mu.Unlock()

	for batch := range events {
		c.apply(batch)
	}
	c.mu.Lock()
	c.ready = false
	c.progress = nil
	c.mu.Unlock()
	if err := werr(); err != nil {
		return err
	}
	return fmt.Errorf("watch of %s ended", c.prefix)
}

func (c *watchCache) apply(batch []store.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range batch {
		if ev.Type == store.Progress {
			if ev.Revision > c.rv {
				c.rv = ev.Revision
			}
			continue
		}
		obj, err := c.decode(ev.KV)
		if err != nil {
			c.log.Error("cannot decode stored object; skipped", "key", ev.KV.Key, "err", err)
			continue
		}
		prev := c.items[ev.KV.Key]
		ce := cacheEvent{key: ev.KV.Key, obj: obj, prev: prev, rv: ev.Revision}
		switch {
		case ev.Type == store.Deleted:
			ce.typ = watch.Deleted
			delete(c.items, ev.KV.Key)
		case prev == nil:
			ce.typ = watch.Added
			c.items[ev.KV.Key] = obj
		default:
			ce.typ = watch.Modified
			c.items[ev.KV.Key] = obj
		}
		c.rv = ev.Revision
		if floor, ok := trimHistory(&c.events, c.history); ok {
			c.floor = floor
		}
		c.events = append(c.events, ce)
		for w := range c.watchers {
			if !w.push(ce) {
				delete(c.watchers, w)
			}
		}
	}
	c.cond.Broadcast()
}

// trimHistory makes room for one more event in a history of at most
// history events (plus a slack of history/8) by dropping the oldest, and
// returns the revision of the newest dropped (the new floor). Dropping in
// batches keeps the copy amortized O(1) per event instead of O(history).
func trimHistory(events *[]cacheEvent, history int) (floor int64, trimmed bool) {
	ev := *events
	if len(ev) < history+history/8 {
		return 0, false
	}
	drop := len(ev) - history + 1
	floor = ev[drop-1].rv
	n := copy(ev, ev[drop:])
	clear(ev[n:]) // release the dropped objects
	*events = ev[:n]
	return floor, true
}

// waitFor blocks until the cache has seen revision rev (or ctx ends).
func (c *watchCache) waitFor(ctx context.Context, rev int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready && c.rv >= rev {
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	asked := false
	for !c.ready || c.rv < rev {
		if ctx.Err() != nil {
			return fmt.Errorf("cache of %s at revision %d, waiting for %d: %w", c.prefix, c.rv, rev, ctx.Err())
		}
		if c.ready && !asked && c.progress != nil {
			asked = true
			go c.progress()
		}
		c.cond.Wait()
	}
	return nil
}

// waitFresh waits until the cache holds everything written before the call.
func (c *watchCache) waitFresh(ctx context.Context) error {
	rev, err := c.st.Revision(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.waitFor(ctx, rev)
}

// snapshot returns the cached objects accepted by keep, sorted by key, and
// the cache's revision.
func (c *watchCache) snapshot(keyPrefix string, keep func(runtime.Object) bool) ([]runtime.Object, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.snapshotLocked(keyPrefix, keep), c.rv
}

func (c *watchCache) snapshotLocked(keyPrefix string, keep func(runtime.Object) bool) []runtime.Object {
	keys := make([]string, 0, len(c.items))
	for k := range c.items {
		if len(k) >= len(keyPrefix) && k[:len(keyPrefix)] == keyPrefix {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]runtime.Object, 0, len(keys))
	for _, k := range keys {
		o := c.items[k]
		if keep == nil || keep(o) {
			out = append(out, o)
		}
	}
	return out
}

// get returns the cached object at key.
func (c *watchCache) get(key string) (runtime.Object, int64, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o, ok := c.items[key]
	return o, c.rv, ok
}

// cacheWatcher receives a cache's events for one API watch.
type cacheWatcher struct {
	mu      sync.Mutex
	queue   []cacheEvent
	signal  chan struct{}
	done    chan struct{}
	stopped bool
}

func newCacheWatcher() *cacheWatcher {
	return &cacheWatcher{signal: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues an event; it returns false (and stops the watcher) when the
// watcher is too far behind.
func (w *cacheWatcher) push(ev cacheEvent) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	if len(w.queue) >= maxWatcherBacklog {
		w.stopped = true
		close(w.done)
		return false
	}
	w.queue = append(w.queue, ev)
	select {
	case w.signal <- struct{}{}:
	default:
	}
	return true
}

// take returns the queued events.
func (w *cacheWatcher) take() []cacheEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	q := w.queue
	w.queue = nil
	return q
}

func (w *cacheWatcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		close(w.done)
	}
}

// watch registers a watcher. When initial is true the current objects
// under keyPrefix are returned (to be sent as ADDED) and events after the
// cache's revision follow; otherwise events after rv are replayed from
// history and the result's objects are nil. It returns the revision the
// watch starts after.
func (c *watchCache) watch(ctx context.Context, keyPrefix string, rv int64, initial bool) (*cacheWatcher, []runtime.Object, int64, error) {
	if !initial && rv > 0 {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := c.waitFor(wctx, rv)
		cancel()
		if err != nil {
			return nil, nil, 0, fmt.Errorf("too large resource version: %d: %w", rv, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ready {
		return nil, nil, 0, errors.New("watch cache is not ready")
	}
	w := newCacheWatcher()
	if initial {
		objs := c.snapshotLocked(keyPrefix, nil)
		c.watchers[w] = struct{}{}
		return w, objs, c.rv, nil
	}
	if rv < c.floor {
		return nil, nil, 0, fmt.Errorf("%w: %d (the oldest kept is %d)", errTooOld, rv, c.floor)
	}
	i := sort.Search(len(c.events), func(i int) bool { return c.events[i].rv > rv })
	w.queue = append(w.queue, c.events[i:]...)
	if len(w.queue) > 0 {
		w.signal <- struct{}{}
	}
	c.watchers[w] = struct{}{}
	return w, nil, rv, nil
}

// unwatch removes a watcher.
func (c *watchCache) unwatch(w *cacheWatcher) {
	c.mu.Lock()
	delete(c.watchers, w)
	c.mu.Unlock()
	w.stop()
}

// revision returns the cache's current revision.
func (c *watchCache) revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rv
}
