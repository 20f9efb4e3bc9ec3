package endpoints_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/endpoints"
)

func TestEndpointsFollowReadiness(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := endpoints.New(endpoints.Config{Client: cs, Factory: f, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, f, c)

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}}}}
	if _, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b"} {
		controllertest.CreatePod(ctx, t, cs, name, "n1", map[string]string{"app": "web"})
		controllertest.SetPodStatus(ctx, t, cs, name, fmt.Sprintf("10.42.0.%d", i+1), name == "a")
	}
	state := func(ready, notReady string) func() (bool, string) {
		return func() (bool, string) {
			ep, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			var r, nr string
			for _, ss := range ep.Subsets {
				for _, a := range ss.Addresses {
					r += fmt.Sprintf("%s:%d ", a.IP, ss.Ports[0].Port)
				}
				for _, a := range ss.NotReadyAddresses {
					nr += fmt.Sprintf("%s:%d ", a.IP, ss.Ports[0].Port)
				}
			}
			return r == ready && nr == notReady && ep.Labels[endpoints.LabelManagedBy] == endpoints.ControllerName,
				fmt.Sprintf("ready %q not ready %q labels %v", r, nr, ep.Labels)
		}
	}
	controllertest.Eventually(t, "a ready, b not", state("10.42.0.1:8080 ", "10.42.0.2:8080 "))
	controllertest.SetPodStatus(ctx, t, cs, "b", "10.42.0.2", true)
	controllertest.SetPodStatus(ctx, t, cs, "a", "10.42.0.1", false)
	controllertest.Eventually(t, "b ready, a not", state("10.42.0.2:8080 ", "10.42.0.1:8080 "))
	if err := cs.CoreV1().Pods("default").Delete(ctx, "a", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "a gone", state("10.42.0.2:8080 ", ""))

	// Deleted by someone: put back.
	if err := cs.CoreV1().Endpoints("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "endpoints recreated", state("10.42.0.2:8080 ", ""))

	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "endpoints deleted with the service", func() (bool, string) {
		_, err := cs.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}
