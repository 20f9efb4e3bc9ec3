package nodelifecycle_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/nodelifecycle"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

// heartbeat plays the kubelet: it renews the node's Lease and posts
// Ready=True until ctx ends.
func heartbeat(ctx context.Context, cs kubernetes.Interface, node string) {
	for ctx.Err() == nil {
		now := metav1.NowMicro()
		l, err := cs.CoordinationV1().Leases(nodelifecycle.LeaseNamespace).Get(ctx, node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, _ = cs.CoordinationV1().Leases(nodelifecycle.LeaseNamespace).Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: node}, Spec: coordinationv1.LeaseSpec{RenewTime: &now}}, metav1.CreateOptions{})
		} else if err == nil {
			l.Spec.RenewTime = &now
			_, _ = cs.CoordinationV1().Leases(nodelifecycle.LeaseNamespace).Update(ctx, l, metav1.UpdateOptions{})
		}
		if n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err == nil {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
			_, _ = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		}
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// startKubelet runs heartbeat until the returned stop is called or the
// test ends.
func startKubelet(t *testing.T, cs kubernetes.Interface, node string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); heartbeat(ctx, cs, node) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func TestSilentNodeTaintedAndDrained(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := nodelifecycle.New(nodelifecycle.Config{Client: cs, Factory: f, Logger: controllertest.Logger(),
		GracePeriod: 2 * time.Second, EvictionRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stopKubelet := startKubelet(t, cs, "n1")
	controllertest.Run(t, f, c)

	one := int64(1)
	pods := map[string][]corev1.Toleration{
		"short":   {{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &one}},
		"forever": {{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
		"default": nil,
	}
	for name, tols := range pods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{NodeName: "n1", Tolerations: tols, Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		controllertest.SetPodStatus(ctx, t, cs, name, "10.42.0.9", true)
	}
	got, err := cs.CoreV1().Pods("default").Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Tolerations) != 2 || *got.Spec.Tolerations[1].TolerationSeconds != 300 {
		t.Fatalf("default tolerations: %+v", got.Spec.Tolerations)
	}

	taints := func() string {
		n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		s := ""
		for _, t := range n.Spec.Taints {
			s += t.Key + ":" + string(t.Effect) + " "
		}
		return s
	}
	// The kubelet stops.
	stopKubelet()
	controllertest.Eventually(t, "node unknown and tainted unreachable", func() (bool, string) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		var ready corev1.NodeCondition
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				ready = c
			}
		}
		ok := ready.Status == corev1.ConditionUnknown && ready.Reason == "NodeStatusUnknown" && ready.Message == "Kubelet stopped posting node status."
		return ok && taints() == "node.kubernetes.io/unreachable:NoExecute ", fmt.Sprintf("ready %+v taints %s", ready, taints())
	})
	gone := func(name string) (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "gone"
		}
		if err != nil {
			return false, err.Error()
		}
		return p.DeletionTimestamp != nil, fmt.Sprintf("ready=%v deleting=%v", podstate.Ready(p), p.DeletionTimestamp != nil)
	}
	controllertest.Eventually(t, "pod with a 1s toleration evicted", func() (bool, string) { return gone("short") })
	for _, name := range []string{"forever", "default"} {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil {
			t.Fatalf("pod %s: %v, deleting %v; want kept", name, err, err == nil && p.DeletionTimestamp != nil)
		}
		if podstate.Ready(p) {
			t.Errorf("pod %s on an unreachable node still ready", name)
		}
	}

	// The kubelet comes back: the taint goes.
	startKubelet(t, cs, "n1")
	controllertest.Eventually(t, "taint removed", func() (bool, string) { return taints() == "", taints() })
}
