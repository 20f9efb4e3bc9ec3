package loadbalancer_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/loadbalancer"
)

func TestAllocateExhaustRelease(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	factory := informers.NewSharedInformerFactory(cs, 0)
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	c, err := loadbalancer.New(loadbalancer.Config{Client: cs, Factory: factory, Logger: controllertest.Logger(), Pool: "192.168.50.10/32",
		Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "service-lb-controller"})})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, factory, c)

	create := func(name string) {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: fmt.Sprintf("10.43.1.%d", len(name)),
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ingress := func(name string) string {
		s, err := cs.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return ""
		}
		return s.Status.LoadBalancer.Ingress[0].IP
	}
	create("a")
	controllertest.Eventually(t, "a gets the pool's address", func() (bool, string) {
		ip := ingress("a")
		return ip == "192.168.50.10", ip
	})
	create("bb")
	controllertest.Eventually(t, "bb pending with an event", func() (bool, string) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "bb").String()})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == loadbalancer.ReasonAllocationFailed {
				return ingress("bb") == "", e.Message
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})
	if err := cs.CoreV1().Services("default").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "bb gets the released address", func() (bool, string) {
		ip := ingress("bb")
		return ip == "192.168.50.10", ip
	})
}
