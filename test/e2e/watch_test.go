package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// event is a watch event reduced to what the tests compare.
type event struct {
	Type watch.EventType
	Name string
	RV   string
}

func (e event) String() string { return fmt.Sprintf("%s %s@%s", e.Type, e.Name, e.RV) }

// nextEvents reads n events other than bookmarks from w, failing the test
// if they do not arrive within a minute.
func nextEvents(t *testing.T, w watch.Interface, n int) []event {
	t.Helper()
	var out []event
	deadline := time.After(time.Minute)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %d of %d events: %v", len(out), n, out)
			}
			if ev.Type == watch.Bookmark {
				continue
			}
			if ev.Type == watch.Error {
				t.Fatalf("watch error event: %+v", ev.Object)
			}
			m, err := metaAccessor(ev.Object)
			if err != nil {
				t.Fatalf("event object %T: %v", ev.Object, err)
			}
			out = append(out, event{ev.Type, m.GetName(), m.GetResourceVersion()})
		case <-deadline:
			t.Fatalf("got %d of %d events within a minute: %v", len(out), n, out)
		}
	}
	return out
}

func metaAccessor(obj any) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}

func eventsEqual(t *testing.T, what string, got, want []event) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// newNamespace creates a namespace and waits for the ConfigMap
// kube-root-ca.crt that the root-ca-cert-publisher puts in every one, so
// that it comes before what a test does there (names leaves it out).
func newNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctxT(t, time.Minute), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	poll(t, rootCAConfigMap+" in "+name, time.Minute, func() (bool, string) {
		_, err := cs.CoreV1().ConfigMaps(name).Get(ctxT(t, 10*time.Second), rootCAConfigMap, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
}

// rootCAConfigMap is the ConfigMap every namespace has.
const rootCAConfigMap = "kube-root-ca.crt"

func configMap(name string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Data: map[string]string{"k": name}}
}

func testPod(name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, SchedulerName: "e2e-no-scheduler",
			Containers: []corev1.Container{{Name: "main", Image: "registry.local/busybox:1", Command: []string{"sleep", "3600"}}}}}
}

// TestWatchSemantics checks watch from a resourceVersion, bookmarks,
// paginated lists and selectors with a typed client-go clientset.
func TestWatchSemantics(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	cs := s.Clientset(t)
	t.Run("from-resource-version", func(t *testing.T) { watchFromResourceVersion(t, cs) })
	t.Run("bookmarks", func(t *testing.T) { watchBookmarks(t, cs) })
	t.Run("pagination", func(t *testing.T) { listPagination(t, cs) })
	t.Run("label-selector", func(t *testing.T) { labelSelectors(t, cs) })
	t.Run("field-selector", func(t *testing.T) { fieldSelectors(t, cs) })
	t.Run("namespace-isolation", func(t *testing.T) { namespaceIsolation(t, cs) })
	t.Run("api-subset", func(t *testing.T) { apiSubset(t, cs, "embedded-subset") })
}

func watchFromResourceVersion(t *testing.T, cs kubernetes.Interface) {
	const ns = "watch-rv"
	newNamespace(t, cs, ns)
	ctx := ctxT(t, 2*time.Minute)
	cms := cs.CoreV1().ConfigMaps(ns)
	a, err := cms.Create(ctx, configMap("a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := cms.Create(ctx, configMap("b", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a.Data["k"] = "changed"
	a2, err := cms.Update(ctx, a, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: a.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	got := nextEvents(t, w, 3)
	if len(got) == 3 && got[2].Type == watch.Deleted {
		// the deletion's version is only known from the event; it must be newer
		if n, _ := strconv.ParseInt(got[2].RV, 10, 64); n <= mustInt(t, a2.ResourceVersion) {
			t.Errorf("DELETED at resourceVersion %s, not after the update at %s", got[2].RV, a2.ResourceVersion)
		}
		got[2].RV = "<deleted>"
	}
	eventsEqual(t, "watch from the create of a", got, []event{
		{watch.Added, "b", b.ResourceVersion},
		{watch.Modified, "a", a2.ResourceVersion},
		{watch.Deleted, "b", "<deleted>"},
	})
	// the next event is the next change: nothing was duplicated or held back
	z, err := cms.Create(ctx, configMap("z", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "the event after them", nextEvents(t, w, 1), []event{{watch.Added, "z", z.ResourceVersion}})

	// resourceVersion "0" and "" start with the current state as ADDED events
	w0, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	defer w0.Stop()
	var initial []event
	for _, e := range nextEvents(t, w0, 3) {
		if e.Name != rootCAConfigMap {
			initial = append(initial, e)
		}
	}
	got = initial
	sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
	eventsEqual(t, "watch from 0", got, []event{{watch.Added, "a", a2.ResourceVersion}, {watch.Added, "z", z.ResourceVersion}})
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q is not an integer: %v", s, err)
	}
	return n
}

func watchBookmarks(t *testing.T, cs kubernetes.Interface) {
	const ns = "watch-bookmarks"
	newNamespace(t, cs, ns)
	ctx := ctxT(t, 3*time.Minute)
	cms := cs.CoreV1().ConfigMaps(ns)
	c, err := cms.Create(ctx, configMap("c", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: c.ResourceVersion, AllowWatchBookmarks: true, TimeoutSeconds: ptr(int64(120))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	// Changes elsewhere move the resourceVersion on; this watch sees none of
	// them as events, only as bookmarks.
	newNamespace(t, cs, "other-bookmarks")
	other := cs.CoreV1().ConfigMaps("other-bookmarks")
	bctx, stopBumps := context.WithCancel(ctx)
	defer stopBumps()
	go func() {
		for i := 0; bctx.Err() == nil; i++ {
			_, _ = other.Create(bctx, configMap(fmt.Sprintf("bump-%d", i), nil), metav1.CreateOptions{})
			select {
			case <-bctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	deadline := time.After(2 * time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("watch closed before a BOOKMARK")
			}
			if m, err := metaAccessor(ev.Object); ev.Type != watch.Bookmark && err == nil && m.GetNamespace() == "other-bookmarks" {
				continue // a leak across namespaces; namespace-isolation reports it
			}
			if ev.Type != watch.Bookmark {
				t.Fatalf("unexpected %s event before the bookmark: %+v", ev.Type, ev.Object)
			}
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok {
				t.Fatalf("bookmark object is %T, want *v1.ConfigMap", ev.Object)
			}
			if mustInt(t, cm.ResourceVersion) <= mustInt(t, c.ResourceVersion) {
				t.Errorf("bookmark resourceVersion %s is not newer than the watch's start %s", cm.ResourceVersion, c.ResourceVersion)
			}
			if cm.Name != "" || len(cm.Data) != 0 {
				t.Errorf("bookmark carries more than a resourceVersion: %+v", cm)
			}
			return
		case <-deadline:
			t.Fatal("no BOOKMARK within two minutes")
		}
	}
}

func ptr[T any](v T) *T { return &v }

func listPagination(t *testing.T, cs kubernetes.Interface) {
	const ns = "paging"
	const n = 1200
	newNamespace(t, cs, ns)
	ctx := ctxT(t, 5*time.Minute)
	cms := cs.CoreV1().ConfigMaps(ns)
	names := make(chan string)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range names {
				if _, err := cms.Create(ctx, configMap(name, nil), metav1.CreateOptions{}); err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
				}
			}
		}()
	}
	want := map[string]bool{rootCAConfigMap: true}
	for i := range n {
		name := fmt.Sprintf("cm-%04d", i)
		want[name] = true
		names <- name
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	seen := map[string]int{}
	var order []string
	opts := metav1.ListOptions{Limit: 100}
	pages, listRV := 0, ""
	for {
		l, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatalf("list page %d: %v", pages+1, err)
		}
		pages++
		if int64(len(l.Items)) > opts.Limit {
			t.Fatalf("page %d has %d items, over the limit %d", pages, len(l.Items), opts.Limit)
		}
		if listRV == "" {
			listRV = l.ResourceVersion
			// a change after the first page is not part of this list
			if _, err := cms.Create(ctx, configMap("zz-late", nil), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		} else if l.ResourceVersion != listRV {
			t.Errorf("page %d at resourceVersion %s, the first at %s", pages, l.ResourceVersion, listRV)
		}
		for _, cm := range l.Items {
			seen[cm.Name]++
			order = append(order, cm.Name)
		}
		if l.Continue == "" {
			if l.RemainingItemCount != nil && *l.RemainingItemCount != 0 {
				t.Errorf("last page has remainingItemCount %d", *l.RemainingItemCount)
			}
			break
		}
		if pages > n {
			t.Fatal("pagination does not end")
		}
		opts.Continue = l.Continue
	}
	if wantPages := (len(want) + 99) / 100; pages != wantPages {
		t.Errorf("%d pages of 100, want %d", pages, wantPages)
	}
	for name, c := range seen {
		if c != 1 {
			t.Errorf("%s listed %d times", name, c)
		}
		if !want[name] {
			t.Errorf("%s listed but not part of the snapshot", name)
		}
	}
	for name := range want {
		if seen[name] == 0 {
			t.Errorf("%s missing from the paginated list", name)
		}
	}
	if !sort.StringsAreSorted(order) {
		t.Errorf("paginated list is not in key order")
	}
	// a bad continue token is a 400, not a crash
	if _, err := cms.List(ctx, metav1.ListOptions{Limit: 10, Continue: "not-a-token"}); err == nil {
		t.Error("list with a garbage continue token succeeded")
	}
}

func labelSelectors(t *testing.T, cs kubernetes.Interface) {
	const ns = "labels"
	newNamespace(t, cs, ns)
	ctx := ctxT(t, 2*time.Minute)
	cms := cs.CoreV1().ConfigMaps(ns)
	for _, c := range []struct{ name, color string }{{"r1", "red"}, {"r2", "red"}, {"b1", "blue"}, {"n1", ""}} {
		labels := map[string]string{"app": "sel"}
		if c.color != "" {
			labels["color"] = c.color
		}
		if _, err := cms.Create(ctx, configMap(c.name, labels), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		sel  string
		want []string
	}{
		{"color=red", []string{"r1", "r2"}},
		{"color!=red", []string{"b1", "n1"}},
		{"color in (red,blue)", []string{"b1", "r1", "r2"}},
		{"color", []string{"b1", "r1", "r2"}},
		{"!color", []string{"n1"}},
		{"app=sel,color=blue", []string{"b1"}},
		{"color=green", nil},
	} {
		l, err := cms.List(ctx, metav1.ListOptions{LabelSelector: c.sel})
		if err != nil {
			t.Errorf("list -l %q: %v", c.sel, err)
			continue
		}
		if got := names(l.Items); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("list -l %q: %v, want %v", c.sel, got, c.want)
		}
	}
	if _, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "color in (red"}); err == nil {
		t.Error("list with a malformed label selector succeeded")
	}

	all, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: "color=red", ResourceVersion: all.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cms.Create(ctx, configMap("b2", map[string]string{"color": "blue"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r3, err := cms.Create(ctx, configMap("r3", map[string]string{"color": "red"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// r1 leaves the selection: a watch sees it as DELETED
	r1, err := cms.Get(ctx, "r1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r1.Labels["color"] = "blue"
	r1b, err := cms.Update(ctx, r1, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// b1 enters it: ADDED
	b1, err := cms.Get(ctx, "b1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b1.Labels["color"] = "red"
	b1r, err := cms.Update(ctx, b1, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "watch -l color=red", nextEvents(t, w, 3), []event{
		{watch.Added, "r3", r3.ResourceVersion},
		{watch.Deleted, "r1", r1b.ResourceVersion},
		{watch.Added, "b1", b1r.ResourceVersion},
	})
}

func names[T any, PT interface {
	*T
	metav1.Object
}](items []T) []string {
	var out []string
	for i := range items {
		if name := PT(&items[i]).GetName(); name != rootCAConfigMap {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func fieldSelectors(t *testing.T, cs kubernetes.Interface) {
	const ns = "fields"
	newNamespace(t, cs, ns)
	ctx := ctxT(t, 2*time.Minute)
	pods := cs.CoreV1().Pods(ns)
	for _, p := range []struct{ name, node string }{{"pa1", "node-a"}, {"pa2", "node-a"}, {"pb1", "node-b"}, {"pu", ""}} {
		if _, err := pods.Create(ctx, testPod(p.name, p.node, nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		sel  string
		want []string
	}{
		{"spec.nodeName=node-a", []string{"pa1", "pa2"}},
		{"spec.nodeName=", []string{"pu"}},
		{"spec.nodeName!=node-a", []string{"pb1", "pu"}},
		{"metadata.name=pb1", []string{"pb1"}},
		{"metadata.name=pa1,spec.nodeName=node-a", []string{"pa1"}},
		{"metadata.name=pa1,spec.nodeName=node-b", nil},
		{"status.phase=Pending", []string{"pa1", "pa2", "pb1", "pu"}},
	} {
		l, err := pods.List(ctx, metav1.ListOptions{FieldSelector: c.sel})
		if err != nil {
			t.Errorf("list --field-selector %q: %v", c.sel, err)
			continue
		}
		if got := names(l.Items); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("list --field-selector %q: %v, want %v", c.sel, got, c.want)
		}
	}
	if _, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.noSuchField=x"}); err == nil {
		t.Error("list with an unsupported field selector succeeded")
	}
	l, err := cs.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=no-such-configmap"})
	if err != nil || len(l.Items) != 0 {
		t.Errorf("configmaps metadata.name= selector: %v items, err %v", len(l.Items), err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, configMap("named", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=named"})
	if err != nil || fmt.Sprint(names(cl.Items)) != "[named]" {
		t.Errorf("configmaps metadata.name=named: %v, err %v", names(cl.Items), err)
	}

	pl, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a", ResourceVersion: pl.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := pods.Create(ctx, testPod("pb2", "node-b", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pa3, err := pods.Create(ctx, testPod("pa3", "node-a", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "watch --field-selector spec.nodeName=node-a", nextEvents(t, w, 1), []event{{watch.Added, "pa3", pa3.ResourceVersion}})

	wn, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=pb3", ResourceVersion: pa3.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer wn.Stop()
	if _, err := pods.Create(ctx, testPod("pb4", "node-b", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pb3, err := pods.Create(ctx, testPod("pb3", "node-b", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "watch --field-selector metadata.name=pb3", nextEvents(t, wn, 1), []event{{watch.Added, "pb3", pb3.ResourceVersion}})
}

// namespaceIsolation checks that a namespace's list and watch hold only its
// own objects, also when another namespace's name starts with its name.
func namespaceIsolation(t *testing.T, cs kubernetes.Interface) {
	ctx := ctxT(t, 2*time.Minute)
	newNamespace(t, cs, "iso")
	newNamespace(t, cs, "iso-x")
	in, err := cs.CoreV1().ConfigMaps("iso").Create(ctx, configMap("mine", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("iso").Watch(ctx, metav1.ListOptions{ResourceVersion: in.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cs.CoreV1().ConfigMaps("iso-x").Create(ctx, configMap("theirs", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("iso-x").Create(ctx, testPod("theirs", "", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := cs.CoreV1().ConfigMaps("iso").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l.Items); fmt.Sprint(got) != "[mine]" {
		t.Errorf("list in namespace iso: %v, want [mine]", got)
	}
	for _, cm := range l.Items {
		if cm.Namespace != "iso" {
			t.Errorf("list in namespace iso returned %s/%s", cm.Namespace, cm.Name)
		}
	}
	pl, err := cs.CoreV1().Pods("iso").List(ctx, metav1.ListOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Items) != 0 {
		t.Errorf("paginated pod list in namespace iso: %v, want none", names(pl.Items))
	}
	sentinel, err := cs.CoreV1().ConfigMaps("iso").Create(ctx, configMap("sentinel", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "watch in namespace iso", nextEvents(t, w, 1), []event{{watch.Added, "sentinel", sentinel.ResourceVersion}})
}
