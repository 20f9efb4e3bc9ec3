package apiserver

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/apiserver/registry/discovery"
)

func TestParsePortRange(t *testing.T) {
	cases := []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"30000-32767", PortRange{30000, 32767}, true},
		{" 20000-20010 ", PortRange{20000, 20010}, true},
		{"3-2", PortRange{}, false},
		{"0-10", PortRange{}, false},
		{"1-70000", PortRange{}, false},
		{"30000", PortRange{}, false},
	}
	for _, c := range cases {
		got, err := ParsePortRange(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParsePortRange(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestServiceAllocInRange(t *testing.T) {
	a, err := newServiceAlloc("/registry", netip.MustParsePrefix("10.43.0.0/16"), PortRange{})
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"10.43.0.0": false, "10.43.0.1": true, "10.43.255.254": true,
		"10.43.255.255": false, "10.44.0.1": false, "fd00::1": false} {
		if got := a.inRange(netip.MustParseAddr(ip)); got != want {
			t.Errorf("inRange(%s) = %v, want %v", ip, got, want)
		}
	}
	if a.kubernetesIP().String() != "10.43.0.1" || a.ports != DefaultNodePortRange {
		t.Errorf("kubernetes IP %s, ports %s", a.kubernetesIP(), a.ports)
	}
	for _, bad := range []string{"fd00::/64", "10.0.0.0/30", "10.0.0.0/4"} {
		if _, err := newServiceAlloc("/registry", netip.MustParsePrefix(bad), PortRange{}); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func withServiceCIDR(c *Config) {
	c.ServiceCIDR = netip.MustParsePrefix("10.43.0.0/16")
	c.AdvertiseAddress = netip.MustParseAddr("192.0.2.10")
}

func svcOf(name string, typ corev1.ServiceType, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Type: typ,
		Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{Port: 80}}}}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func withIP(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.ClusterIP = ip }
}

func withNodePort(np int32) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports[0].NodePort = np }
}

// withServiceCIDRAndSlices is withServiceCIDR serving EndpointSlices too.
func withServiceCIDRAndSlices(c *Config) {
	withServiceCIDR(c)
	c.Resources = append(c.Resources, discovery.Resources()...)
}

func TestServiceAllocation(t *testing.T) {
	ts := startTestServerIn(t, t.TempDir(), withServiceCIDRAndSlices)
	ctx := context.Background()
	svcs := ts.cs.CoreV1().Services("default")
	cidr := netip.MustParsePrefix("10.43.0.0/16")

	k, err := svcs.Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || k.Spec.ClusterIP != "10.43.0.1" {
		t.Fatalf("kubernetes service: %v %v", k, err)
	}
	ep, err := ts.cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || len(ep.Subsets) != 1 || ep.Subsets[0].Addresses[0].IP != "192.0.2.10" {
		t.Fatalf("kubernetes endpoints: %v %v", ep, err)
	}
	checkKubernetesSlice(t, ts, "192.0.2.10")

	ok := []struct {
		name  string
		svc   *corev1.Service
		check func(*corev1.Service) error
	}{
		{"auto IP", svcOf("auto", "", nil), func(s *corev1.Service) error {
			a, err := netip.ParseAddr(s.Spec.ClusterIP)
			if err != nil || !cidr.Contains(a) || len(s.Spec.ClusterIPs) != 1 || s.Spec.ClusterIPs[0] != s.Spec.ClusterIP ||
				len(s.Spec.IPFamilies) != 1 || s.Spec.IPFamilies[0] != corev1.IPv4Protocol ||
				*s.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
				return fmt.Errorf("cluster IP %q %v %v %v", s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy)
			}
			return nil
		}},
		{"requested IP", svcOf("fixed", "", withIP("10.43.0.10")), func(s *corev1.Service) error {
			if s.Spec.ClusterIP != "10.43.0.10" {
				return fmt.Errorf("cluster IP %q", s.Spec.ClusterIP)
			}
			return nil
		}},
		{"headless", svcOf("headless", "", withIP("None")), func(s *corev1.Service) error {
			if s.Spec.ClusterIP != "None" {
				return fmt.Errorf("cluster IP %q", s.Spec.ClusterIP)
			}
			return nil
		}},
		{"external name", svcOf("ext", corev1.ServiceTypeExternalName, func(s *corev1.Service) {
			s.Spec.ExternalName, s.Spec.Selector, s.Spec.Ports = "example.com", nil, nil
		}), func(s *corev1.Service) error {
			if s.Spec.ClusterIP != "" || len(s.Spec.IPFamilies) != 0 {
				return fmt.Errorf("cluster IP %q families %v", s.Spec.ClusterIP, s.Spec.IPFamilies)
			}
			return nil
		}},
		{"prefer dual stack", svcOf("dual", "", func(s *corev1.Service) {
			p := corev1.IPFamilyPolicyPreferDualStack
			s.Spec.IPFamilyPolicy = &p
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		}), func(s *corev1.Service) error {
			if len(s.Spec.ClusterIPs) != 1 || len(s.Spec.IPFamilies) != 1 {
				return fmt.Errorf("cluster IPs %v families %v", s.Spec.ClusterIPs, s.Spec.IPFamilies)
			}
			return nil
		}},
		{"auto node port", svcOf("np", corev1.ServiceTypeNodePort, nil), func(s *corev1.Service) error {
			if np := s.Spec.Ports[0].NodePort; np < 30000 || np > 32767 || s.Spec.ClusterIP == "" {
				return fmt.Errorf("node port %d, cluster IP %q", np, s.Spec.ClusterIP)
			}
			return nil
		}},
		{"requested node port", svcOf("np-fixed", corev1.ServiceTypeNodePort, withNodePort(30080)), func(s *corev1.Service) error {
			if s.Spec.Ports[0].NodePort != 30080 {
				return fmt.Errorf("node port %d", s.Spec.Ports[0].NodePort)
			}
			return nil
		}},
		{"load balancer local", svcOf("lb", corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}), func(s *corev1.Service) error {
			if s.Spec.Ports[0].NodePort == 0 || s.Spec.HealthCheckNodePort == 0 || s.Spec.HealthCheckNodePort == s.Spec.Ports[0].NodePort {
				return fmt.Errorf("node port %d, health check %d", s.Spec.Ports[0].NodePort, s.Spec.HealthCheckNodePort)
			}
			return nil
		}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			got, err := svcs.Create(ctx, c.svc, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.check(got); err != nil {
				t.Fatal(err)
			}
			// what the server answered is what it stored
			stored, err := svcs.Get(ctx, c.svc.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.check(stored); err != nil {
				t.Fatalf("stored: %v", err)
			}
		})
	}

	bad := []struct {
		name string
		svc  *corev1.Service
		want string
	}{
		{"IP taken", svcOf("taken", "", withIP("10.43.0.10")),
			`spec.clusterIPs: Invalid value: "10.43.0.10": provided IP is already allocated`},
		{"kubernetes IP taken", svcOf("taken2", "", withIP("10.43.0.1")),
			`spec.clusterIPs: Invalid value: "10.43.0.1": provided IP is already allocated`},
		{"IP out of range", svcOf("far", "", withIP("10.96.0.10")),
			`spec.clusterIPs[0]: Invalid value: "10.96.0.10": provided IP is not in the valid range. The range of valid IPs is 10.43.0.0/16`},
		{"port taken", svcOf("np-taken", corev1.ServiceTypeNodePort, withNodePort(30080)),
			`spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated`},
		{"port out of range", svcOf("np-far", corev1.ServiceTypeNodePort, withNodePort(80)),
			`spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767`},
		{"require dual stack", svcOf("dual2", "", func(s *corev1.Service) {
			p := corev1.IPFamilyPolicyRequireDualStack
			s.Spec.IPFamilyPolicy = &p
		}), `spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services`},
		{"IPv6", svcOf("v6", "", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
			`spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster`},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, err := svcs.Create(ctx, c.svc, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want 422 with %q", err, c.want)
			}
		})
	}

	// a delete gives the IP back
	if err := svcs.Delete(ctx, "fixed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs.Create(ctx, svcOf("fixed2", "", withIP("10.43.0.10")), metav1.CreateOptions{}); err != nil {
		t.Fatalf("IP not released by delete: %v", err)
	}

	// NodePort -> ClusterIP releases the port, ClusterIP -> NodePort takes one
	np, err := svcs.Get(ctx, "np-fixed", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	np.Spec.Type = corev1.ServiceTypeClusterIP
	np.Spec.Ports[0].NodePort = 0
	np.Spec.ExternalTrafficPolicy = ""
	if _, err := svcs.Update(ctx, np, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs.Create(ctx, svcOf("np-fixed2", corev1.ServiceTypeNodePort, withNodePort(30080)), metav1.CreateOptions{}); err != nil {
		t.Fatalf("port not released by a type change: %v", err)
	}
	auto, err := svcs.Get(ctx, "auto", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	auto.Spec.Type = corev1.ServiceTypeNodePort
	auto.Spec.Ports[0].NodePort = 30080
	if _, err := svcs.Update(ctx, auto, metav1.UpdateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated") {
		t.Fatalf("update to a taken port: %v", err)
	}
	auto.Spec.Ports[0].NodePort = 0
	upd, err := svcs.Update(ctx, auto, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Spec.Ports[0].NodePort == 0 || upd.Spec.ClusterIP != auto.Spec.ClusterIP {
		t.Fatalf("ClusterIP -> NodePort: port %d, IP %s -> %s", upd.Spec.Ports[0].NodePort, auto.Spec.ClusterIP, upd.Spec.ClusterIP)
	}
	// a dry run shows the allocation but takes nothing
	dry, err := svcs.Create(ctx, svcOf("dry", corev1.ServiceTypeNodePort, withIP("10.43.0.20")), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil || dry.Spec.Ports[0].NodePort == 0 {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	if _, err := svcs.Create(ctx, svcOf("wet", "", withIP("10.43.0.20")), metav1.CreateOptions{}); err != nil {
		t.Fatalf("dry run took the IP: %v", err)
	}
}

func TestServiceAllocationConcurrent(t *testing.T) {
	ts := startTestServerIn(t, t.TempDir(), func(c *Config) {
		withServiceCIDR(c)
		c.ServiceNodePortRange = PortRange{Min: 31000, Max: 31099}
	})
	ctx := context.Background()
	svcs := ts.cs.CoreV1().Services("default")
	const n = 50
	var wg sync.WaitGroup
	got := make([]*corev1.Service, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = svcs.Create(ctx, svcOf(fmt.Sprintf("s%d", i), corev1.ServiceTypeNodePort, nil), metav1.CreateOptions{})
		}()
	}
	wg.Wait()
	ips, ports := map[string]string{}, map[int32]string{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("create %d: %v", i, errs[i])
		}
		s := got[i]
		if prev, dup := ips[s.Spec.ClusterIP]; dup {
			t.Errorf("%s and %s share IP %s", prev, s.Name, s.Spec.ClusterIP)
		}
		ips[s.Spec.ClusterIP] = s.Name
		np := s.Spec.Ports[0].NodePort
		if prev, dup := ports[np]; dup || np < 31000 || np > 31099 {
			t.Errorf("%s: node port %d (also %q)", s.Name, np, prev)
		}
		ports[np] = s.Name
	}
}

func TestServiceAllocationSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startTestServerIn(t, dir, withServiceCIDRAndSlices)
	ctx := context.Background()
	first, err := ts.cs.CoreV1().Services("default").Create(ctx, svcOf("a", corev1.ServiceTypeNodePort, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts.stop()

	ts = startTestServerIn(t, dir, func(c *Config) {
		withServiceCIDRAndSlices(c)
		c.AdvertiseAddress = netip.MustParseAddr("192.0.2.11")
	})
	svcs := ts.cs.CoreV1().Services("default")
	// the kubernetes service's endpoints follow the server's new address
	ep, err := ts.cs.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || len(ep.Subsets) != 1 || ep.Subsets[0].Addresses[0].IP != "192.0.2.11" ||
		ep.Subsets[0].Ports[0].Port != int32(ts.port()) {
		t.Fatalf("kubernetes endpoints after restart: %v %v", ep, err)
	}
	checkKubernetesSlice(t, ts, "192.0.2.11")
	_, err = svcs.Create(ctx, svcOf("b", "", withIP(first.Spec.ClusterIP)), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided IP is already allocated") {
		t.Fatalf("IP after restart: %v", err)
	}
	_, err = svcs.Create(ctx, svcOf("c", corev1.ServiceTypeNodePort, withNodePort(first.Spec.Ports[0].NodePort)), metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "provided port is already allocated") {
		t.Fatalf("node port after restart: %v", err)
	}
	if k, err := svcs.Get(ctx, "kubernetes", metav1.GetOptions{}); err != nil || k.Spec.ClusterIP != "10.43.0.1" {
		t.Fatalf("kubernetes service after restart: %v %v", k, err)
	}
}

// port is the port the test server listens on.
func (ts *testServer) port() int {
	u, err := url.Parse(ts.rest.Host)
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(u.Port())
	return p
}

func TestServiceAllocationFillsRange(t *testing.T) {
	ts := startTestServerIn(t, t.TempDir(), func(c *Config) {
		c.ServiceCIDR = netip.MustParsePrefix("10.43.0.0/29") // .2 to .6 are dynamic
		c.ServiceNodePortRange = PortRange{Min: 31000, Max: 31004}
	})
	ctx := context.Background()
	svcs := ts.cs.CoreV1().Services("default")
	ips, ports := map[string]bool{}, map[int32]bool{}
	for i := range 5 {
		s, err := svcs.Create(ctx, svcOf(fmt.Sprintf("s%d", i), corev1.ServiceTypeNodePort, nil), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		ips[s.Spec.ClusterIP], ports[s.Spec.Ports[0].NodePort] = true, true
	}
	if len(ips) != 5 || len(ports) != 5 || ips["10.43.0.1"] || ips["10.43.0.7"] {
		t.Fatalf("IPs %v, ports %v", ips, ports)
	}
	_, err := svcs.Create(ctx, svcOf("full", "", nil), metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "range is full") {
		t.Fatalf("create in a full range: %v", err)
	}
	// a release makes room again
	if err := svcs.Delete(ctx, "s0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcs.Create(ctx, svcOf("again", corev1.ServiceTypeNodePort, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create after a release: %v", err)
	}
}

// checkKubernetesSlice checks the kubernetes service's EndpointSlice (the
// proxy's source): the server's address and port.
func checkKubernetesSlice(t *testing.T, ts *testServer, ip string) {
	t.Helper()
	es, err := ts.cs.DiscoveryV1().EndpointSlices("default").Get(context.Background(), "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if es.Labels[discoveryv1.LabelServiceName] != "kubernetes" || len(es.Endpoints) != 1 || es.Endpoints[0].Addresses[0] != ip ||
		len(es.Ports) != 1 || *es.Ports[0].Name != "https" || int(*es.Ports[0].Port) != ts.port() {
		t.Errorf("kubernetes endpoint slice %+v", es)
	}
}
