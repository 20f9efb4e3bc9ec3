package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// eventLog records what an informer's handler saw, per object, as
// "A@rv", "U@rv" and "D".
type eventLog struct {
	mu      sync.Mutex
	seq     map[string][]string
	echoes  []string // updates whose old and new resourceVersion are equal (a re-list)
	unknown []string // deletions the informer inferred from a re-list
}

func (l *eventLog) add(name, e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq[name] = append(l.seq[name], e)
}

func (l *eventLog) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			p := obj.(*corev1.Pod)
			l.add(p.Name, "A@"+p.ResourceVersion)
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, n := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
			if o.ResourceVersion == n.ResourceVersion {
				l.mu.Lock()
				l.echoes = append(l.echoes, n.Name+"@"+n.ResourceVersion)
				l.mu.Unlock()
				return
			}
			l.add(n.Name, "U@"+n.ResourceVersion)
		},
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				l.mu.Lock()
				l.unknown = append(l.unknown, d.Key)
				l.mu.Unlock()
				l.add(d.Key[strings.LastIndex(d.Key, "/")+1:], "D")
				return
			}
			l.add(obj.(*corev1.Pod).Name, "D")
		},
	}
}

func (l *eventLog) snapshot() map[string][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]string, len(l.seq))
	for k, v := range l.seq {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// diffSeqs describes how got differs from want.
func diffSeqs(got, want map[string][]string) string {
	var b strings.Builder
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if g, w := strings.Join(got[k], " "), strings.Join(want[k], " "); g != w {
			fmt.Fprintf(&b, "\n  %s: saw [%s], want [%s]", k, g, w)
		}
	}
	return b.String()
}

// listWatchCounter counts the informer's lists and watches.
type listWatchCounter struct {
	mu      sync.Mutex
	lists   int
	watches []string // the resourceVersion each watch started from
}

// TestInformerSurvivesRestart runs a client-go informer on pods while the
// server restarts, and checks that every change is delivered exactly once.
func TestInformerSurvivesRestart(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	cs := s.Clientset(t)
	const ns = "informer"
	newNamespace(t, cs, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pods := cs.CoreV1().Pods(ns)

	truth := map[string][]string{}
	var truthMu sync.Mutex
	create := func(name string) {
		t.Helper()
		p, err := pods.Create(ctx, testPod(name, "", map[string]string{"gen": "0"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		truthMu.Lock()
		truth[name] = append(truth[name], "A@"+p.ResourceVersion)
		truthMu.Unlock()
	}
	update := func(name string) {
		t.Helper()
		p, err := pods.Patch(ctx, name, "application/merge-patch+json",
			[]byte(fmt.Sprintf(`{"metadata":{"labels":{"gen":"%d"}}}`, time.Now().UnixNano())), metav1.PatchOptions{})
		if err != nil {
			t.Fatalf("update %s: %v", name, err)
		}
		truthMu.Lock()
		truth[name] = append(truth[name], "U@"+p.ResourceVersion)
		truthMu.Unlock()
	}
	remove := func(name string) {
		t.Helper()
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
			t.Fatalf("delete %s: %v", name, err)
		}
		truthMu.Lock()
		truth[name] = append(truth[name], "D")
		truthMu.Unlock()
	}
	pod := func(i int) string { return fmt.Sprintf("p-%02d", i) }

	for i := range 10 {
		create(pod(i))
	}

	counter := &listWatchCounter{}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			counter.mu.Lock()
			counter.lists++
			counter.mu.Unlock()
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			counter.mu.Lock()
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				counter.lists++
			}
			counter.watches = append(counter.watches, o.ResourceVersion)
			counter.mu.Unlock()
			return pods.Watch(ctx, o)
		},
	}
	log := &eventLog{seq: map[string][]string{}}
	inf := cache.NewSharedIndexInformer(lw, &corev1.Pod{}, 0, cache.Indexers{})
	if _, err := inf.AddEventHandler(log.handler()); err != nil {
		t.Fatal(err)
	}
	infCtx, stopInformer := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); inf.RunWithContext(infCtx) }()
	defer func() { stopInformer(); wg.Wait() }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}

	caughtUp := func(what string) {
		t.Helper()
		poll(t, "informer "+what, time.Minute, func() (bool, string) {
			truthMu.Lock()
			defer truthMu.Unlock()
			got := log.snapshot()
			d := diffSeqs(got, truth)
			return d == "", d
		})
	}
	for i := 10; i < 20; i++ {
		create(pod(i))
	}
	for i := range 5 {
		update(pod(i))
	}
	caughtUp("before the restart")

	// changes in flight while the server goes down
	for i := 5; i < 10; i++ {
		update(pod(i))
	}
	s.Restart(t)

	for i := 20; i < 30; i++ {
		create(pod(i))
	}
	for i := 0; i < 30; i += 3 {
		update(pod(i))
	}
	for i := 1; i < 30; i += 6 {
		remove(pod(i))
	}
	update(pod(0))
	caughtUp("after the restart")

	// the store equals the server's list
	l, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, p := range l.Items {
		want[p.Name] = p.ResourceVersion
	}
	got := map[string]string{}
	for _, o := range inf.GetStore().List() {
		p := o.(*corev1.Pod)
		got[p.Name] = p.ResourceVersion
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("informer store != server list:\n store %v\n list  %v", got, want)
	}
	if len(want) != 25 {
		t.Errorf("server lists %d pods, want 25", len(want))
	}

	log.mu.Lock()
	echoes, unknown := log.echoes, log.unknown
	log.mu.Unlock()
	counter.mu.Lock()
	lists, watches := counter.lists, counter.watches
	counter.mu.Unlock()
	t.Logf("informer: %d list(s), watches from resourceVersions %v", lists, watches)
	if len(echoes) > 0 || len(unknown) > 0 {
		t.Errorf("the informer re-listed instead of resuming its watch: %d duplicate update notifications %v, %d inferred deletions %v",
			len(echoes), echoes, len(unknown), unknown)
	}
	if lists != 1 {
		t.Errorf("informer listed %d times, want once: the watch did not resume after the restart", lists)
	}
}
