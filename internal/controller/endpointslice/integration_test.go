package endpointslice_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/endpointslice"
)

func TestSlicesFollowReadiness(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := endpointslice.New(endpointslice.Config{Client: cs, Factory: f, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, f, c)

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}}}}
	svc, err = cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// state prints the endpoints of the service's slices as ip:port(ready,serving,terminating,zone).
	state := func(want string) func() (bool, string) {
		return func() (bool, string) {
			list, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{
				LabelSelector: discoveryv1.LabelServiceName + "=web," + discoveryv1.LabelManagedBy + "=" + endpointslice.ControllerName})
			if err != nil {
				return false, err.Error()
			}
			s := ""
			for _, es := range list.Items {
				if ref := metav1.GetControllerOf(&es); ref == nil || ref.UID != svc.UID {
					return false, fmt.Sprintf("owner %+v", es.OwnerReferences)
				}
				s += fmt.Sprintf("[%s", es.AddressType)
				for _, ep := range es.Endpoints {
					z := ""
					if ep.Zone != nil {
						z = *ep.Zone
					}
					s += fmt.Sprintf(" %s:%d(%v,%v,%v,%s)", ep.Addresses[0], *es.Ports[0].Port,
						*ep.Conditions.Ready, *ep.Conditions.Serving, *ep.Conditions.Terminating, z)
				}
				s += "]"
			}
			return s == want, s
		}
	}
	controllertest.Eventually(t, "an empty slice", state("[IPv4]"))
	controllertest.CreatePod(ctx, t, cs, "a", "n1", map[string]string{"app": "web"})
	controllertest.SetPodStatus(ctx, t, cs, "a", "10.42.0.1", false)
	controllertest.Eventually(t, "a not ready", state("[IPv4 10.42.0.1:8080(false,false,false,z1)]"))
	controllertest.SetPodStatus(ctx, t, cs, "a", "10.42.0.1", true)
	controllertest.Eventually(t, "a ready", state("[IPv4 10.42.0.1:8080(true,true,false,z1)]"))
	// A graceful delete: the pod terminates on its node, still serving.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "a terminating", state("[IPv4 10.42.0.1:8080(false,true,true,z1)]"))
	if err := cs.CoreV1().Pods("default").Delete(ctx, "a", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "a gone", state("[IPv4]"))
	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "slices gone with the service", state(""))
}
