package apiserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-sh/skiff/internal/store"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// bookmarkInterval is how often a watch that allows bookmarks gets one.
const bookmarkInterval = 5 * time.Second

// initialEventsEnd is the annotation on the bookmark that ends the initial
// events of a watch with sendInitialEvents=true.
const initialEventsEnd = "k8s.io/initial-events-end"

// serveWatch streams watch events for one resource.
func (s *Server) serveWatch(h *resourceHandler, w http.ResponseWriter, r *http.Request, ri requestInfo, q queryParams) {
	sel, err := h.parseSelectors(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	enc, ok := s.codecs.negotiate(r, "Table", "PartialObjectMetadata")
	if !ok {
		s.writeError(w, r, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", h.gr, "", "the requested media type is not supported", 0, false))
		return
	}
	ctx := r.Context()
	if q.timeoutSeconds > 0 {
		var cancel func()
		ctx, cancel = contextWithTimeout(ctx, time.Duration(q.timeoutSeconds)*time.Second)
		defer cancel()
	} else {
		var cancel func()
		ctx, cancel = contextWithTimeout(ctx, 30*time.Minute+time.Duration(time.Now().UnixNano()%int64(30*time.Minute)))
		defer cancel()
	}
	var rv int64
	initial := false
	switch {
	case q.sendInitialEvents != nil && *q.sendInitialEvents:
		if !q.allowBookmarks {
			s.writeError(w, r, apierrors.NewInvalid(h.qualifiedKind(), "", nil))
			return
		}
		initial = true
		if q.resourceVersion == "" {
			if err := h.cache.waitFresh(ctx); err != nil {
				s.writeError(w, r, apierrors.NewTimeoutError("the watch cache is not up to date: "+err.Error(), 1))
				return
			}
		}
	case q.resourceVersion == "" || q.resourceVersion == "0":
		initial = true
	default:
		rv, _ = strconv.ParseInt(q.resourceVersion, 10, 64)
	}
	keyPrefix := h.keyPrefix(ri.namespace)
	cw, objs, startRV, err := h.cache.watch(ctx, keyPrefix, rv, initial)
	switch {
	case err != nil && rv > 0 && isTooOld(err):
		// Older than the cache's window (after a restart, say): replay
		// etcd's history, which reaches back to the last compaction.
		cw, err = h.watchFromStore(ctx, keyPrefix, rv)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		startRV = rv
	case err != nil:
		s.writeError(w, r, apierrors.NewTimeoutError(err.Error(), 1))
		return
	default:
		defer h.cache.unwatch(cw)
	}
	s.metrics.watchers.WithLabelValues(h.gr.String()).Inc()
	defer s.metrics.watchers.WithLabelValues(h.gr.String()).Dec()

	var writer streaming.Encoder
	embedded := enc.enc
	fw := &flushWriter{w: w}
	fw.flusher, _ = w.(http.Flusher)
	switch enc.media {
	case mediaProtobuf:
		w.Header().Set("Content-Type", mediaProtobuf+";stream=watch")
		writer = streaming.NewEncoder(protobuf.LengthDelimitedFramer.NewFrameWriter(fw), s.codecs.protobufRaw)
	default:
		w.Header().Set("Content-Type", mediaJSON)
		writer = streaming.NewEncoder(fw, s.codecs.json)
		embedded = s.codecs.json
	}
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	includeObject := q.includeObject
	send := func(typ watch.EventType, obj runtime.Object) bool {
		out, err := s.transform(h, obj, enc, includeObject)
		if err != nil {
			out = &apierrors.NewInternalError(err).ErrStatus
			typ = watch.Error
		}
		data, err := runtime.Encode(embedded, out)
		if err != nil {
			s.log.Error("encode watch event", "err", err)
			return false
		}
		ev := &metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: data}}
		return writer.Encode(ev) == nil
	}
	lastRV := startRV
	for _, o := range objs {
		so, err := h.toServed(o)
		if err != nil || !h.matches(sel, so) {
			continue
		}
		if !send(watch.Added, so) {
			return
		}
	}
	bookmark := func(annotate bool) bool {
		b := h.r.New()
		b.GetObjectKind().SetGroupVersionKind(h.r.GVK)
		m := registry.Meta(b)
		m.SetResourceVersion(strconv.FormatInt(lastRV, 10))
		if annotate {
			m.SetAnnotations(map[string]string{initialEventsEnd: "true"})
		}
		return send(watch.Bookmark, b)
	}
	if q.sendInitialEvents != nil && *q.sendInitialEvents {
		if !bookmark(true) {
			return
		}
	}
	var tick <-chan time.Time
	if q.allowBookmarks {
		t := time.NewTicker(bookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	sentRV := lastRV
	for {
		select {
		case <-ctx.Done():
			return
		case <-cw.done:
			// drain what was queued before the stop, then end the watch
			s.sendQueued(h, cw, keyPrefix, sel, send, &lastRV)
			return
		case <-tick:
			if rv := h.cache.revision(); rv > lastRV {
				lastRV = rv
			}
			if lastRV > sentRV {
				if !bookmark(false) {
					return
				}
				sentRV = lastRV
			}
		case <-cw.signal:
			if !s.sendQueued(h, cw, keyPrefix, sel, send, &lastRV) {
				return
			}
		}
	}
}

// sendQueued sends a watcher's queued events through the selector.
func (s *Server) sendQueued(h *resourceHandler, cw *cacheWatcher, keyPrefix string, sel selector, send func(watch.EventType, runtime.Object) bool, lastRV *int64) bool {
	for _, ev := range cw.take() {
		if ev.rv > *lastRV {
			*lastRV = ev.rv
		}
		if !strings.HasPrefix(ev.key, keyPrefix) {
			continue
		}
		obj, err := h.toServed(ev.obj)
		if err != nil {
			continue
		}
		if h.r.Storage != nil {
			registry.Meta(obj).SetResourceVersion(strconv.FormatInt(ev.rv, 10))
		}
		cur := h.matches(sel, obj)
		was := false
		if ev.prev != nil {
			prev, err := h.toServed(ev.prev)
			if err == nil {
				was = h.matches(sel, prev)
			}
		}
		typ := ev.typ
		switch ev.typ {
		case watch.Added:
			if !cur {
				continue
			}
		case watch.Modified:
			switch {
			case cur && !was:
				typ = watch.Added
			case !cur && was:
				typ = watch.Deleted
			case !cur && !was:
				continue
			}
		case watch.Deleted:
			if !cur && !was {
				continue
			}
			if ev.typ == watch.Deleted {
				obj = obj.DeepCopyObject()
				registry.Meta(obj).SetResourceVersion(strconv.FormatInt(ev.rv, 10))
			}
		}
		if !send(typ, obj) {
			return false
		}
	}
	return true
}

// flushWriter flushes the response after every write, so that each watch
// event reaches the client at once.
type flushWriter struct {
	w       io.Writer
	flusher http.Flusher
}

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if f.flusher != nil {
		f.flusher.Flush()
	}
	return n, err
}

func contextWithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

func isTooOld(err error) bool { return errors.Is(err, errTooOld) }

// watchFromStore serves a watch from etcd's history after rv. It returns
// 410 Gone when etcd compacted that history.
func (h *resourceHandler) watchFromStore(ctx context.Context, prefix string, rv int64) (*cacheWatcher, error) {
	// Make sure the revision is still in etcd's history before answering.
	if _, _, _, err := h.s.store.List(ctx, prefix, "", 1, rv); err != nil {
		if errors.Is(err, store.ErrCompacted) {
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d", rv))
		}
		return nil, apierrors.NewInternalError(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	events, werr := h.s.store.Watch(wctx, prefix, rv)
	cw := newCacheWatcher()
	go func() {
		defer cancel()
		defer cw.stop()
		for batch := range events {
			for _, ev := range batch {
				if ev.Type == store.Progress {
					continue
				}
				ce, err := h.storeEvent(ev)
				if err != nil {
					h.s.log.Error("decode watched object", "key", ev.KV.Key, "err", err)
					continue
				}
				if !cw.push(ce) {
					return
				}
			}
		}
		if err := werr(); err != nil && wctx.Err() == nil {
			h.s.log.Debug("watch from store ended", "prefix", prefix, "err", err)
		}
	}()
	go func() {
		select {
		case <-cw.done:
		case <-wctx.Done():
		}
		cancel()
	}()
	return cw, nil
}

// storeEvent turns an etcd event into a cache event with decoded objects.
func (h *resourceHandler) storeEvent(ev store.Event) (cacheEvent, error) {
	obj, err := h.s.decodeStored(h.storageGR, ev.KV)
	if err != nil {
		return cacheEvent{}, err
	}
	ce := cacheEvent{key: ev.KV.Key, obj: obj, rv: ev.Revision}
	switch {
	case ev.Type == store.Deleted:
		ce.typ = watch.Deleted
		ce.prev = obj
	case ev.Created:
		ce.typ = watch.Added
	default:
		ce.typ = watch.Modified
		if ev.Prev != nil {
			prev, err := h.s.decodeStored(h.storageGR, store.KV{Key: ev.KV.Key, Value: ev.Prev, ModRevision: ev.Revision})
			if err != nil {
				return cacheEvent{}, err
			}
			ce.prev = prev
		}
	}
	return ce, nil
}
