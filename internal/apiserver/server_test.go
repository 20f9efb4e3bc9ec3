package apiserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/core"
	"github.com/skiff-sh/skiff/internal/pki"
	"github.com/skiff-sh/skiff/internal/store"
)

// testServer runs an API server with the core resources on an embedded
// etcd in a temporary directory.
type testServer struct {
	store *store.Store
	rest  *rest.Config
	cs    *kubernetes.Clientset
	// stop stops the server and closes its store (also done at cleanup).
	stop func()
}

func startTestServer(t *testing.T) *testServer {
	return startTestServerWith(t, 0)
}

func startTestServerWith(t *testing.T, history int, extra ...*registry.Resource) *testServer {
	return startTestServerIn(t, t.TempDir(), func(c *Config) {
		c.WatchHistory = history
		c.Resources = append(c.Resources, extra...)
	})
}

// startTestServerIn runs a server on the data in dir, with its
// configuration changed by configure.
func startTestServerIn(t *testing.T, dir string, configure func(*Config)) *testServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.New(ctx, store.Config{DataDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.EnsureCA(dir + "/pki")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := ca.IssueServing(dir+"/pki", "apiserver", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, Listener: ln, CertFile: certFile, KeyFile: keyFile, ClientCA: ca.Pool(),
		Resources: core.Resources(), Logger: log,
		Bootstrap: []runtime.Object{&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "default"}},
			&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}}},
		ServiceAccountSigner: testSigner(t)}
	configure(&cfg)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			_ = st.Close()
		})
	}
	t.Cleanup(stop)
	select {
	case <-s.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("server not ready")
	}
	certPEM, keyPEM, err := ca.IssueClient("tester", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rest.Config{Host: "https://" + ln.Addr().String(), QPS: -1,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM(), CertData: certPEM, KeyData: keyPEM}}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &testServer{store: st, rest: rc, cs: cs, stop: stop}
}

func cm(name string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: map[string]string{"k": name}}
}

func TestWatchFromResourceVersion(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	cms := ts.cs.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, cm("b", map[string]string{"x": "1"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	upd := first.DeepCopy()
	upd.Data["k"] = "changed"
	if _, err := cms.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	want := []struct {
		typ  watch.EventType
		name string
	}{{watch.Added, "b"}, {watch.Modified, "a"}, {watch.Deleted, "b"}}
	for i, wnt := range want {
		select {
		case ev := <-w.ResultChan():
			m := ev.Object.(*corev1.ConfigMap)
			if ev.Type != wnt.typ || m.Name != wnt.name {
				t.Fatalf("event %d: got %s %s, want %s %s", i, ev.Type, m.Name, wnt.typ, wnt.name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d: none received", i)
		}
	}
	// a label-selected watch sees an object leave its selection as DELETED
	sw, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: "x=1", ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Stop()
	ev := <-sw.ResultChan()
	if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "b" {
		t.Fatalf("selected watch: got %s %v", ev.Type, ev.Object)
	}
	ev = <-sw.ResultChan()
	if ev.Type != watch.Deleted {
		t.Fatalf("selected watch: got %s, want DELETED", ev.Type)
	}
}

func TestWatchCompactedIsGone(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	cms := ts.cs.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// push the cache's history window past the first version
	for i := 0; i < 200; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("n%d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rev, err := ts.store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.store.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	// the store is compacted: a paginated list from the old version is gone
	_, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact, Limit: 5})
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("list at compacted version: got %v, want 410 Gone", err)
	}
}

func TestWatchOlderThanCache(t *testing.T) {
	ts := startTestServerWith(t, 10)
	ctx := context.Background()
	cms := ts.cs.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, cm("first", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := 0; i < n; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("n%02d", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The cache keeps 10 events: this watch is served from etcd's history.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		select {
		case ev := <-w.ResultChan():
			c, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || ev.Type != watch.Added || c.Name != fmt.Sprintf("n%02d", i) {
				t.Fatalf("event %d: got %s %v", i, ev.Type, ev.Object)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d not received", i)
		}
	}
	w.Stop()
	rev, err := ts.store.Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.store.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	// Now the history is gone too: 410.
	w, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err == nil {
		ev := <-w.ResultChan()
		w.Stop()
		st, ok := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !ok || st.Code != http.StatusGone {
			t.Fatalf("watch from a compacted version: got %s %v, want 410", ev.Type, ev.Object)
		}
		return
	}
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from a compacted version: got %v, want 410 Gone", err)
	}
}

func TestListPagination(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	cms := ts.cs.CoreV1().ConfigMaps("default")
	const n = 57
	for i := 0; i < n; i++ {
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("c%03d", i), map[string]string{"odd": fmt.Sprint(i%2 == 1)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	opts := metav1.ListOptions{Limit: 10, LabelSelector: "odd=true"}
	pages := 0
	for {
		l, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(l.Items) > 10 {
			t.Fatalf("page has %d items, limit 10", len(l.Items))
		}
		for _, it := range l.Items {
			if seen[it.Name] {
				t.Fatalf("%s listed twice", it.Name)
			}
			seen[it.Name] = true
		}
		if l.Continue == "" {
			break
		}
		// writes between pages do not show up in the paginated list
		if _, err := cms.Create(ctx, cm(fmt.Sprintf("late%d", pages), map[string]string{"odd": "true"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		opts.Continue = l.Continue
	}
	if len(seen) != n/2 {
		t.Fatalf("listed %d odd configmaps, want %d", len(seen), n/2)
	}
	if pages != 3 {
		t.Fatalf("listed in %d pages, want 3", pages)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{Limit: 1, Continue: "garbage"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("bad continue token: got %v, want 400", err)
	}
}

func TestConflictAndDryRun(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	cms := ts.cs.CoreV1().ConfigMaps("default")
	c, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c1 := c.DeepCopy()
	c1.Data["k"] = "1"
	if _, err := cms.Update(ctx, c1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	c2 := c.DeepCopy()
	c2.Data["k"] = "2"
	if _, err := cms.Update(ctx, c2, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: got %v, want 409", err)
	}
	if _, err := cms.Create(ctx, cm("a", nil), metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("duplicate create: got %v, want 409 AlreadyExists", err)
	}
	if _, err := cms.Create(ctx, cm("dry", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("dry-run create stored the object: %v", err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	got, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "1" {
		t.Fatalf("after dry-run delete: %v %v", got, err)
	}
	if _, err := ts.cs.CoreV1().ConfigMaps("nope").Create(ctx, cm("x", nil), metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in missing namespace: got %v, want 404", err)
	}
}

func TestProtobufClient(t *testing.T) {
	ts := startTestServer(t)
	rc := rest.CopyConfig(ts.rest)
	rc.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pods := cs.CoreV1().Pods("default")
	w, err := pods.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	created, err := pods.Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.Spec.RestartPolicy != corev1.RestartPolicyAlways || created.UID == "" {
		t.Fatalf("created pod not defaulted: %+v", created.Spec)
	}
	l, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("list: %v %v", l, err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Added || ev.Object.(*corev1.Pod).Name != "p" {
			t.Fatalf("watch: got %s %v", ev.Type, ev.Object)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event over protobuf")
	}
}
