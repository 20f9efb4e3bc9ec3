package dns_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/dns"
)

func TestReachable(t *testing.T) {
	for ep, want := range map[string]bool{
		"192.0.2.10:10053": true, "127.0.0.1:10053": false, "0.0.0.0:10053": false, "192.0.2.10:0": false, "[::1]:53": false,
	} {
		if got := dns.Reachable(netip.MustParseAddrPort(ep)); got != want {
			t.Errorf("Reachable(%s) = %v", ep, got)
		}
	}
	if dns.Reachable(netip.AddrPort{}) {
		t.Error("the zero address is reachable")
	}
}

// startPublisher runs a publisher until stop is called or the test ends.
func startPublisher(t *testing.T, cfg dns.PublisherConfig) (stop func()) {
	t.Helper()
	cfg.Logger = controllertest.Logger()
	p, err := dns.NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("publisher: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("publisher did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

// endpoints are the addresses of the kube-dns slices and of its Endpoints.
func endpoints(ctx context.Context, cs kubernetes.Interface) (fromSlices, fromEndpoints []string, err error) {
	sl, err := cs.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
	if err != nil {
		return nil, nil, err
	}
	for _, s := range sl.Items {
		for _, e := range s.Endpoints {
			for _, p := range s.Ports {
				fromSlices = append(fromSlices, fmt.Sprintf("%s:%d/%s", e.Addresses[0], *p.Port, *p.Protocol))
			}
		}
	}
	ep, err := cs.CoreV1().Endpoints("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, nil, err
	}
	if err == nil {
		for _, sub := range ep.Subsets {
			for _, a := range sub.Addresses {
				for _, p := range sub.Ports {
					fromEndpoints = append(fromEndpoints, fmt.Sprintf("%s:%d/%s", a.IP, p.Port, p.Protocol))
				}
			}
		}
	}
	slices.Sort(fromSlices)
	slices.Sort(fromEndpoints)
	return fromSlices, fromEndpoints, nil
}

func waitEndpoints(t *testing.T, cs kubernetes.Interface, what string, want ...string) {
	t.Helper()
	controllertest.Eventually(t, what, func() (bool, string) {
		s, e, err := endpoints(context.Background(), cs)
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(s, want) && slices.Equal(e, want), fmt.Sprintf("slices %v, endpoints %v, want %v", s, e, want)
	})
}

// TestPublisher: the kube-dns Service is created with the requested IP
// (another when that one is taken), each server with a reachable listener
// has an endpoint, one that stops takes its endpoint away, one that died
// loses it to the others once its Lease expired, and a loopback listener
// publishes nothing.
func TestPublisher(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()

	// the requested IP is taken (by the kubernetes service): another one
	stop := startPublisher(t, dns.PublisherConfig{Client: cs, ServiceIP: "10.43.0.1", Endpoint: netip.MustParseAddrPort("127.0.0.1:10053")})
	controllertest.Eventually(t, "kube-dns created with another IP", func() (bool, string) {
		svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != "10.43.0.1", svc.Spec.ClusterIP
	})
	stop()
	if err := cs.CoreV1().Services("kube-system").Delete(ctx, "kube-dns", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "kube-dns deleted", func() (bool, string) {
		_, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})

	lease := 3 * time.Second
	stopA := startPublisher(t, dns.PublisherConfig{Client: cs, ServiceIP: "10.43.0.10", Identity: "server-a",
		Endpoint: netip.MustParseAddrPort("192.0.2.10:10053"), LeaseDuration: lease})
	waitEndpoints(t, cs, "server a's endpoint", "192.0.2.10:10053/TCP", "192.0.2.10:10053/UDP")
	svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != "10.43.0.10" || svc.Labels["k8s-app"] != "kube-dns" || svc.Spec.Selector != nil || len(svc.Spec.Ports) != 2 ||
		svc.Spec.Ports[0] != (corev1.ServicePort{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: svc.Spec.Ports[0].TargetPort}) ||
		svc.Spec.Ports[1].Name != "dns-tcp" || svc.Spec.Ports[1].Protocol != corev1.ProtocolTCP || svc.Spec.Ports[0].TargetPort.IntValue() != 10053 {
		t.Errorf("kube-dns service %+v %+v", svc.Labels, svc.Spec)
	}

	startPublisher(t, dns.PublisherConfig{Client: cs, Identity: "server-b", Endpoint: netip.MustParseAddrPort("192.0.2.11:10053"), LeaseDuration: lease})
	waitEndpoints(t, cs, "both servers' endpoints", "192.0.2.10:10053/TCP", "192.0.2.10:10053/UDP", "192.0.2.11:10053/TCP", "192.0.2.11:10053/UDP")

	// a loopback listener adds nothing
	startPublisher(t, dns.PublisherConfig{Client: cs, Identity: "server-c", Endpoint: netip.MustParseAddrPort("127.0.0.1:10053"), LeaseDuration: lease})

	stopA()
	waitEndpoints(t, cs, "server a's endpoint withdrawn", "192.0.2.11:10053/TCP", "192.0.2.11:10053/UDP")

	// a server that died: its Lease is old, so server b removes its slice
	// (and a slice of ours that no Lease holds goes too)
	old := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	secs, holder := int32(3), "server-dead"
	if _, err := cs.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns-dead", Labels: map[string]string{dns.LabelPublisher: "kube-dns-dead"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &old}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-dns-dead", "kube-dns-orphan"} {
		ready, port, proto := true, int32(10053), corev1.ProtocolUDP
		pname := "dns"
		if _, err := cs.DiscoveryV1().EndpointSlices("kube-system").Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns", discoveryv1.LabelManagedBy: dns.ManagedBy}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.99"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
			Ports:       []discoveryv1.EndpointPort{{Name: &pname, Port: &port, Protocol: &proto}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitEndpoints(t, cs, "the dead server's endpoint removed", "192.0.2.11:10053/TCP", "192.0.2.11:10053/UDP")
	controllertest.Eventually(t, "the dead server's lease removed", func() (bool, string) {
		_, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, "kube-dns-dead", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}
