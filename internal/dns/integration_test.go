package dns_test

import (
	"context"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/dns"
)

// TestAgainstAPIServer serves names of objects created through a real API
// server, which allocates the service's cluster IP.
func TestAgainstAPIServer(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	s := dns.StartServer(t, dns.Config{Client: cs, Upstreams: []string{}})

	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	host, port, ready := "db-0", int32(5432), true
	name, proto := "pg", corev1.ProtocolTCP
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "db-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.42.0.7"}, Hostname: &host,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP, pod.Status.PodIPs = "10.42.0.9", []corev1.PodIP{{IP: "10.42.0.9"}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	want := map[string][]string{
		"web.default.svc.cluster.local.":        {svc.Spec.ClusterIP},
		"db.default.svc.cluster.local.":         {"10.42.0.7"},
		"db-0.db.default.svc.cluster.local.":    {"10.42.0.7"},
		"10-42-0-9.default.pod.cluster.local.":  {"10.42.0.9"},
		"kubernetes.default.svc.cluster.local.": {"10.43.0.1"},
	}
	deadline := time.Now().Add(60 * time.Second)
	for name, ips := range want {
		for {
			got := lookupA(t, s.Addr(), name)
			if slices.Equal(got, ips) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v, want %v", name, got, ips)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func lookupA(t *testing.T, addr, name string) []string {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	resp, _, err := (&mdns.Client{Timeout: 10 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range resp.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}
