package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestExternalEtcd runs the API subset against a server that stores in an
// external etcd, and checks 410 Gone after the etcd history is compacted.
func TestExternalEtcd(t *testing.T) {
	e := framework.StartEtcd(t)
	s := env.StartServer(t, framework.ServerOptions{EtcdEndpoints: []string{e.Endpoint}})
	cs := s.Clientset(t)
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("api-subset", func(t *testing.T) { apiSubset(t, cs, "ext-etcd") })
	t.Run("stored-in-external-etcd", func(t *testing.T) {
		resp, err := cli.Get(ctx, "", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			if strings.Contains(k, "configmaps") && strings.Contains(k, "ext-etcd") && strings.HasSuffix(k, "/kept") {
				found = true
			}
		}
		if !found {
			t.Errorf("no configmap ext-etcd/kept among the %d keys in the external etcd", len(resp.Kvs))
		}
	})
	t.Run("survives-restart", func(t *testing.T) {
		s.Restart(t)
		cm, err := cs.CoreV1().ConfigMaps("ext-etcd").Get(ctx, "kept", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("get after restart: %v", err)
		}
		if cm.Data["v"] != "2" {
			t.Errorf("after restart: data %v, want v=2", cm.Data)
		}
	})
	t.Run("gone-after-compaction", func(t *testing.T) {
		const ns = "compacted"
		newNamespace(t, cs, ns)
		cms := cs.CoreV1().ConfigMaps(ns)
		var first *corev1.ConfigMap
		for _, name := range []string{"h1", "h2", "h3"} {
			cm, err := cms.Create(ctx, configMap(name, nil), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = cm
			}
		}
		for i := range 5 {
			if _, err := cms.Patch(ctx, "h1", "application/merge-patch+json", []byte(fmt.Sprintf(`{"data":{"i":"%d"}}`, i)), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		page, err := cms.List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if page.Continue == "" {
			t.Fatal("a list of 3 with limit 1 has no continue token")
		}
		// the history is still there: an exact list shows the state at that version
		exact, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
		if err != nil {
			t.Fatalf("exact list before compaction: %v", err)
		}
		if got := names(exact.Items); exact.ResourceVersion != first.ResourceVersion || fmt.Sprint(got) != "[h1]" || exact.Items[0].ResourceVersion != first.ResourceVersion {
			t.Errorf("exact list at %s: resourceVersion %s items %v, want the state then: [h1] at %s",
				first.ResourceVersion, exact.ResourceVersion, got, first.ResourceVersion)
		}
		// one more write, so that compacting at the current revision drops the token's
		if _, err := cms.Patch(ctx, "h2", "application/merge-patch+json", []byte(`{"data":{"later":"yes"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		st, err := cli.Status(ctx, e.Endpoint)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatalf("compact etcd at %d: %v", st.Header.Revision, err)
		}
		_, err = cms.List(ctx, metav1.ListOptions{Limit: 1, Continue: page.Continue})
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Errorf("continue after compaction: %v, want 410 Gone/Expired", err)
		}
		_, err = cms.List(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion, ResourceVersionMatch: metav1.ResourceVersionMatchExact})
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Errorf("exact list at a compacted resourceVersion: %v, want 410 Gone/Expired", err)
		}
		// a fresh server only knows history from now on: a watch from before is 410
		s.Restart(t)
		expectWatchGone(t, cs, ns, first.ResourceVersion)
	})
}

// expectWatchGone watches from rv and expects 410 Gone, either as the
// response or as the first (ERROR) event, as Kubernetes sends it.
func expectWatchGone(t *testing.T, cs kubernetes.Interface, ns, rv string) {
	t.Helper()
	w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctxT(t, time.Minute), metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Fatalf("watch from compacted %s: %v, want 410", rv, err)
		}
		return
	}
	defer w.Stop()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch from a compacted resourceVersion closed without an error")
		}
		st, isStatus := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !isStatus || st.Code != 410 {
			t.Fatalf("watch from compacted %s: first event %s %+v, want ERROR with a 410 Status", rv, ev.Type, ev.Object)
		}
	case <-time.After(time.Minute):
		t.Fatal("watch from a compacted resourceVersion: no event within a minute")
	}
}

// apiSubset creates, reads, lists, watches, updates and deletes a few
// resources in namespace ns.
func apiSubset(t *testing.T, cs kubernetes.Interface, ns string) {
	ctx := ctxT(t, 2*time.Minute)
	newNamespace(t, cs, ns)
	cms := cs.CoreV1().ConfigMaps(ns)
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.UID == "" || cm.ResourceVersion == "" || cm.CreationTimestamp.IsZero() {
		t.Errorf("created object lacks server-set metadata: %+v", cm.ObjectMeta)
	}
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: cm.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	got, err := cms.Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || got.Data["v"] != "1" || got.UID != cm.UID {
		t.Fatalf("get: %+v, %v", got, err)
	}
	got.Data["v"] = "2"
	upd, err := cms.Update(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(gen.Name, "gen-") || len(gen.Name) <= len("gen-") {
		t.Errorf("generateName gave %q", gen.Name)
	}
	if err := cms.Delete(ctx, gen.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Get(ctx, gen.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v, want NotFound", err)
	}
	evs := nextEvents(t, w, 3)
	if len(evs) == 3 {
		evs[2].RV = ""
	}
	eventsEqual(t, "watch", evs, []event{{watch.Modified, "kept", upd.ResourceVersion}, {watch.Added, gen.Name, gen.ResourceVersion}, {watch.Deleted, gen.Name, ""}})
	l, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(l.Items); len(n) != 1 || n[0] != "kept" {
		t.Errorf("list: %v, want [kept]", n)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kept"}}, metav1.CreateOptions{}); !apierrors.IsAlreadyExists(err) {
		t.Errorf("second create: %v, want AlreadyExists", err)
	}

	p, err := cs.CoreV1().Pods(ns).Create(ctx, testPod("pod", "", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodPending || p.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("pod defaults: phase %q restartPolicy %q", p.Status.Phase, p.Spec.RestartPolicy)
	}
	sec, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"a": "b"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(sec.Data["a"]) != "b" || len(sec.StringData) != 0 || sec.Type != corev1.SecretTypeOpaque {
		t.Errorf("secret: data %v stringData %v type %q", sec.Data, sec.StringData, sec.Type)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "pod", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	poll(t, "pod deleted", time.Minute, func() (bool, string) {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, "pod", metav1.GetOptions{})
		return apierrors.IsNotFound(err), "err " + errString(err)
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
