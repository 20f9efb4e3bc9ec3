package nodeipam_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/nodeipam"
)

func start(t *testing.T, cs kubernetes.Interface, rec record.EventRecorder) (stop func()) {
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := nodeipam.New(nodeipam.Config{Client: cs, Factory: f, Recorder: rec, Logger: controllertest.Logger(),
		ClusterCIDR: "10.42.0.0/23"}) // room for two nodes
	if err != nil {
		t.Fatal(err)
	}
	return controllertest.Run(t, f, c)
}

func TestNodesGetPodCIDRs(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	t.Cleanup(b.Shutdown)
	rec := b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "nodeipam-controller"})
	stop := start(t, cs, rec)

	create := func(name string) {
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cidrs := func() map[string]string {
		out := map[string]string{}
		list, _ := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		for _, n := range list.Items {
			if len(n.Spec.PodCIDRs) == 1 && n.Spec.PodCIDRs[0] == n.Spec.PodCIDR {
				out[n.Name] = n.Spec.PodCIDR
			} else {
				out[n.Name] = fmt.Sprintf("%q/%v", n.Spec.PodCIDR, n.Spec.PodCIDRs)
			}
		}
		return out
	}
	create("n1")
	create("n2")
	controllertest.Eventually(t, "n1 and n2 get distinct CIDRs", func() (bool, string) {
		m := cidrs()
		ok := m["n1"] != m["n2"]
		for _, n := range []string{"n1", "n2"} {
			ok = ok && (m[n] == "10.42.0.0/24" || m[n] == "10.42.1.0/24")
		}
		return ok, fmt.Sprint(m)
	})
	exhausted := func(node string) func() (bool, string) {
		return func() (bool, string) {
			evs, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + node + ",reason=CIDRNotAvailable"})
			return err == nil && len(evs.Items) > 0 && cidrs()[node] == `""/[]`, fmt.Sprint(err, cidrs())
		}
	}
	create("n3")
	controllertest.Eventually(t, "n3 gets none: event CIDRNotAvailable", exhausted("n3"))
	held := cidrs()["n1"]
	if err := cs.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "n3 gets n1's CIDR", func() (bool, string) { return cidrs()["n3"] == held, fmt.Sprint(cidrs()) })

	// A restarted controller rebuilds what is taken from the nodes.
	stop()
	start(t, cs, rec)
	create("n4")
	controllertest.Eventually(t, "after restart, n4 gets none", exhausted("n4"))
}
