package server_test

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/server"
)

// TestClusterDNSService: a server with cluster DNS creates kube-dns at the
// service CIDR's tenth address; its listener is on loopback, so it
// publishes no endpoint that pods could not reach.
func TestClusterDNSService(t *testing.T) {
	_, cs := controllertest.ControlPlaneWith(t, func(c *server.Config) { c.ClusterDNSListen = "127.0.0.1:0" })
	ctx := context.Background()
	controllertest.Eventually(t, "kube-dns created", func() (bool, string) {
		svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return svc.Spec.ClusterIP == "10.43.0.10" && len(svc.Spec.Ports) == 2, fmt.Sprintf("%+v", svc.Spec)
	})
	sl, err := cs.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kube-dns"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sl.Items) != 0 {
		t.Errorf("a loopback listener published %d endpoint slices", len(sl.Items))
	}
}
