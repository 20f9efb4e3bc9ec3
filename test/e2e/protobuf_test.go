package e2e

import (
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

const protobufType = "application/vnd.kubernetes.protobuf"

// contentTypes records the Content-Type of every response.
type contentTypes struct {
	mu   sync.Mutex
	seen map[string]string // "METHOD path" -> content type
	rt   http.RoundTripper
}

func (c *contentTypes) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		key := r.Method + " " + r.URL.Path
		if r.URL.Query().Get("watch") == "true" {
			key += "?watch"
		}
		c.seen[key] = resp.Header.Get("Content-Type")
		c.mu.Unlock()
	}
	return resp, err
}

// TestProtobuf drives pods with a clientset that speaks protobuf only.
func TestProtobuf(t *testing.T) {
	s := env.StartServer(t, framework.ServerOptions{})
	newNamespace(t, s.Clientset(t), "proto")
	cfg := s.RestConfig(t)
	cfg.ContentType = protobufType
	cfg.AcceptContentTypes = protobufType
	ct := &contentTypes{seen: map[string]string{}}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { ct.rt = rt; return ct }
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 2*time.Minute)
	pods := cs.CoreV1().Pods("proto")

	w, err := pods.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("protobuf watch: %v", err)
	}
	defer w.Stop()
	created, err := pods.Create(ctx, testPod("pb", "", map[string]string{"enc": "proto"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("protobuf create: %v", err)
	}
	if created.UID == "" || created.Spec.Containers[0].Image != "registry.local/busybox:1" || created.Labels["enc"] != "proto" {
		t.Errorf("protobuf create returned %+v", created)
	}
	got, err := pods.Get(ctx, "pb", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("protobuf get: %v", err)
	}
	if got.UID != created.UID || got.ResourceVersion != created.ResourceVersion || got.Spec.Containers[0].Command[1] != "3600" {
		t.Errorf("protobuf get returned %+v", got)
	}
	got.Labels["enc"] = "proto2"
	upd, err := pods.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("protobuf update: %v", err)
	}
	l, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("protobuf list: %v", err)
	}
	if len(l.Items) != 1 || l.Items[0].Labels["enc"] != "proto2" || l.ResourceVersion == "" {
		t.Errorf("protobuf list: %d items, rv %q", len(l.Items), l.ResourceVersion)
	}
	eventsEqual(t, "protobuf watch", nextEvents(t, w, 2), []event{
		{watch.Added, "pb", created.ResourceVersion}, {watch.Modified, "pb", upd.ResourceVersion}})
	if err := pods.Delete(ctx, "pb", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatalf("protobuf delete: %v", err)
	}
	if evs := nextEvents(t, w, 1); evs[0].Type != watch.Deleted || evs[0].Name != "pb" {
		t.Errorf("protobuf watch after delete: %v", evs)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "proto", metav1.GetOptions{})
	if err != nil || ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("protobuf get namespace: %+v %v", ns, err)
	}

	ct.mu.Lock()
	defer ct.mu.Unlock()
	var keys []string
	for k := range ct.seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := ct.seen[k]; !strings.HasPrefix(v, protobufType) {
			t.Errorf("%s answered with Content-Type %q, want %s", k, v, protobufType)
		}
	}
	if len(keys) < 4 {
		t.Errorf("only %d distinct requests recorded: %v", len(keys), keys)
	}
}
