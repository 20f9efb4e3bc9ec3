package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skiff-sh/skiff/internal/proxy/netns"
)

// testNetns creates a network namespace for the test and returns its
// path; it is deleted when the test ends.
func testNetns(t *testing.T, suffix string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	name := fmt.Sprintf("skiff-px-%d-%s", os.Getpid(), suffix)
	path, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(name) })
	return path
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// podNetwork builds node and pod namespaces joined by a veth pair:
// node 10.99.0.1, pod 10.99.0.2, and a route for the service range
// 10.43.0.0/16 inside the node namespace only.
func podNetwork(t *testing.T) (node, pod string) {
	node, pod = testNetns(t, "node"), testNetns(t, "pod")
	nodeName, podName := strings.TrimPrefix(node, "/run/netns/"), strings.TrimPrefix(pod, "/run/netns/")
	run(t, "ip", "-n", nodeName, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns", podName)
	run(t, "ip", "-n", nodeName, "addr", "add", "10.99.0.1/24", "dev", "veth0")
	run(t, "ip", "-n", nodeName, "link", "set", "veth0", "up")
	run(t, "ip", "-n", podName, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	run(t, "ip", "-n", podName, "link", "set", "eth0", "up")
	run(t, "ip", "-n", podName, "route", "add", "default", "via", "10.99.0.1")
	run(t, "ip", "-n", nodeName, "route", "add", "10.43.0.0/16", "dev", "veth0")
	return node, pod
}

func serveHTTP(t *testing.T, ns, addr, body string) {
	t.Helper()
	l, err := netns.Listen(ns, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// get does one HTTP GET inside ns with a fresh connection.
func get(ns, url string) (string, error) {
	tr := &http.Transport{DisableKeepAlives: true, DialContext: netns.Dialer(ns, &net.Dialer{Timeout: 5 * time.Second})}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func openNS(t *testing.T, path string) int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func nftList(t *testing.T, ns string) string {
	return run(t, "ip", "netns", "exec", strings.TrimPrefix(ns, "/run/netns/"), "nft", "list", "ruleset")
}

func TestApplierTraffic(t *testing.T) {
	node, pod := podNetwork(t)
	serveHTTP(t, pod, "10.99.0.2:8080", "hello from pod")
	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	ready := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false))
	a := NewApplier(openNS(t, node))
	t.Cleanup(func() { _ = a.Cleanup() })

	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{ready}, "n1")); err != nil {
		t.Fatal(err)
	}
	if body, err := get(node, "http://10.43.0.10/"); err != nil || body != "hello from pod" {
		t.Fatalf("through the ClusterIP: %q, %v\n%s", body, err, nftList(t, node))
	}

	// zero endpoints: refused at once (TCP reset), not a timeout
	if err := a.Apply(Build([]*corev1.Service{svc}, nil, "n1")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := get(node, "http://10.43.0.10/")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("with no endpoints: %v, want connection refused\n%s", err, nftList(t, node))
	}
	t.Logf("refused after %v", time.Since(start))

	// back (incremental), then a new applier on the same table (restart):
	// reconciles without deleting the table
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{ready}, "n1")); err != nil {
		t.Fatal(err)
	}
	if body, err := get(node, "http://10.43.0.10/"); err != nil || body != "hello from pod" {
		t.Fatalf("after the endpoint came back: %q, %v", body, err)
	}
	other := service("other", "10.43.0.11", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	withOther := Build([]*corev1.Service{svc, other}, []*discoveryv1.EndpointSlice{ready, slice("other", "http", 8080, ep("10.99.0.2", "n1", true, false))}, "n1")
	if err := a.Apply(withOther); err != nil {
		t.Fatal(err)
	}
	cip := func(ip string) IPPort { return IPPort{IP: netip.MustParseAddr(ip), Proto: 6, Port: 80} }
	svcChain := withOther["default/web"].IPs[cip("10.43.0.10")].Chain
	otherChain := withOther["default/other"].IPs[cip("10.43.0.11")].Chain
	// an established connection (kept alive) survives the restart's sync
	dials := 0
	dial := netns.Dialer(node, &net.Dialer{Timeout: 5 * time.Second})
	keep := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials++
			return dial(ctx, network, addr)
		}}}
	getKeep := func() (string, error) {
		resp, err := keep.Get("http://10.43.0.10/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := getKeep(); err != nil || body != "hello from pod" {
		t.Fatalf("kept-alive client: %q, %v", body, err)
	}
	b := NewApplier(openNS(t, node))
	if err := b.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{ready}, "n1")); err != nil {
		t.Fatal(err)
	}
	// web's chains were right already: only "other"'s go, web's stay
	if rules := nftList(t, node); !strings.Contains(rules, "chain "+svcChain) {
		t.Fatalf("restart lost %s:\n%s", svcChain, rules)
	}
	// another restart: the chains are kept as they are (same rule handles)
	listChain := func() string {
		return run(t, "ip", "netns", "exec", strings.TrimPrefix(node, "/run/netns/"), "nft", "-a", "list", "chain", "ip", ShardTable("default/web"), svcChain)
	}
	before := listChain()
	again := NewApplier(openNS(t, node))
	if err := again.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{ready}, "n1")); err != nil {
		t.Fatal(err)
	}
	if after := listChain(); after != before {
		t.Errorf("a reconcile of an unchanged table rewrote %s:\n%s\nthen:\n%s", svcChain, before, after)
	}
	if body, err := getKeep(); err != nil || body != "hello from pod" || dials != 1 {
		t.Fatalf("kept-alive client after the restart: %q, %v, %d dials (want the one connection reused)", body, err, dials)
	}
	if body, err := get(node, "http://10.43.0.10/"); err != nil || body != "hello from pod" {
		t.Fatalf("after a restart: %q, %v", body, err)
	}
	rules := nftList(t, node)
	for _, gone := range []string{"10.43.0.11", otherChain} {
		if strings.Contains(rules, gone) {
			t.Errorf("after the restart's full sync the table still has %s:\n%s", gone, rules)
		}
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if rules := nftList(t, node); strings.Contains(rules, TableName) {
		t.Errorf("after Cleanup:\n%s", rules)
	}
}

func TestApplierBalances(t *testing.T) {
	node, pod := podNetwork(t)
	run(t, "ip", "-n", strings.TrimPrefix(pod, "/run/netns/"), "addr", "add", "10.99.0.3/24", "dev", "eth0")
	serveHTTP(t, pod, "10.99.0.2:8080", "one")
	serveHTTP(t, pod, "10.99.0.3:8080", "two")
	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	a := NewApplier(openNS(t, node))
	t.Cleanup(func() { _ = a.Cleanup() })
	both := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false), ep("10.99.0.3", "n1", true, false))
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{both}, "n1")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for i := 0; i < 200 && len(seen) < 2; i++ {
		body, err := get(node, "http://10.43.0.10/")
		if err != nil {
			t.Fatal(err)
		}
		seen[body]++
	}
	if len(seen) != 2 {
		t.Fatalf("200 requests reached only %v", seen)
	}
	// incremental: one endpoint becomes not ready, then a third appears
	only := slice("web", "http", 8080, ep("10.99.0.2", "n1", false, false), ep("10.99.0.3", "n1", true, false))
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{only}, "n1")); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if body, err := get(node, "http://10.43.0.10/"); err != nil || body != "two" {
			t.Fatalf("with one ready endpoint: %q, %v", body, err)
		}
	}
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{both}, "n1")); err != nil {
		t.Fatal(err)
	}
	if body, err := get(node, "http://10.43.0.10/"); err != nil || (body != "one" && body != "two") {
		t.Fatalf("with both back: %q, %v", body, err)
	}
}

func TestApplierNodePortAndLoadBalancer(t *testing.T) {
	node, pod := podNetwork(t)
	run(t, "ip", "-n", strings.TrimPrefix(node, "/run/netns/"), "route", "add", "192.168.50.0/24", "dev", "veth0")
	serveHTTP(t, pod, "10.99.0.2:8080", "hello from pod")
	svc := service("web", "10.43.0.10", corev1.ServiceTypeLoadBalancer, port("http", 80, 30080))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.50.1"}}
	a := NewApplier(openNS(t, node))
	t.Cleanup(func() { _ = a.Cleanup() })
	sl := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false))
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{sl}, "n1")); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"http://10.99.0.1:30080/", "http://192.168.50.1/", "http://10.43.0.10/"} {
		if body, err := get(node, url); err != nil || body != "hello from pod" {
			t.Errorf("%s: %q, %v", url, body, err)
		}
	}
	// no endpoints: the node port refuses too
	if err := a.Apply(Build([]*corev1.Service{svc}, nil, "n1")); err != nil {
		t.Fatal(err)
	}
	if _, err := get(node, "http://10.99.0.1:30080/"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("node port without endpoints: %v, want connection refused", err)
	}
}

func TestApplierSessionAffinity(t *testing.T) {
	node, pod := podNetwork(t)
	run(t, "ip", "-n", strings.TrimPrefix(pod, "/run/netns/"), "addr", "add", "10.99.0.3/24", "dev", "eth0")
	serveHTTP(t, pod, "10.99.0.2:8080", "one")
	serveHTTP(t, pod, "10.99.0.3:8080", "two")
	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	a := NewApplier(openNS(t, node))
	t.Cleanup(func() { _ = a.Cleanup() })
	both := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false), ep("10.99.0.3", "n1", true, false))
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{both}, "n1")); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for range 30 {
		body, err := get(node, "http://10.43.0.10/")
		if err != nil {
			t.Fatal(err)
		}
		seen[body]++
	}
	if len(seen) != 1 {
		t.Fatalf("with ClientIP affinity one client reached %v, want one backend", seen)
	}
	// affinity off again (incremental): the sets go away
	svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{both}, "n1")); err != nil {
		t.Fatal(err)
	}
	if rules := nftList(t, node); strings.Contains(rules, "set aff-") {
		t.Errorf("affinity sets left after affinity was turned off:\n%s", rules)
	}
}

func TestApplierSharedExternalIP(t *testing.T) {
	node := testNetns(t, "shared")
	a := NewApplier(openNS(t, node))
	t.Cleanup(func() { _ = a.Cleanup() })
	x := service("x", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	y := service("y", "10.43.0.11", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	x.Spec.ExternalIPs, y.Spec.ExternalIPs = []string{"192.168.60.1"}, []string{"192.168.60.1"}
	// a duplicate destination must not fail the whole transaction
	if err := a.Apply(Build([]*corev1.Service{x, y}, nil, "n1")); err != nil {
		t.Fatal(err)
	}
}

// A proxy upgraded from the single-table layout replaces the old table.
func TestApplierReplacesSingleTable(t *testing.T) {
	node, pod := podNetwork(t)
	serveHTTP(t, pod, "10.99.0.2:8080", "hello from pod")
	old := `table ip skiff-proxy {
	map service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
	chain svc-old { tcp dport 80 dnat to 10.99.0.9:8080; }
	chain services { ip daddr . meta l4proto . th dport vmap @service-ips; }
	chain nat-prerouting { type nat hook prerouting priority dstnat; jump services; }
	chain nat-output { type nat hook output priority -100; jump services; }
}
add element ip skiff-proxy service-ips { 10.43.0.10 . tcp . 80 : goto svc-old }
`
	f := filepath.Join(t.TempDir(), "old.nft")
	if err := os.WriteFile(f, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", strings.TrimPrefix(node, "/run/netns/"), "nft", "-f", f)
	a := NewApplier(openNS(t, node))
	t.Cleanup(func() { _ = a.Cleanup() })
	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	ready := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false))
	if err := a.Apply(Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{ready}, "n1")); err != nil {
		t.Fatal(err)
	}
	if body, err := get(node, "http://10.43.0.10/"); err != nil || body != "hello from pod" {
		t.Fatalf("through the ClusterIP: %q, %v\n%s", body, err, nftList(t, node))
	}
	shared := run(t, "ip", "netns", "exec", strings.TrimPrefix(node, "/run/netns/"), "nft", "list", "table", "ip", TableName)
	for _, gone := range []string{"svc-old", "service-ips", "nat-prerouting"} {
		if strings.Contains(shared, gone) {
			t.Errorf("the shared table still has %s:\n%s", gone, shared)
		}
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if rules := nftList(t, node); strings.Contains(rules, TableName) {
		t.Errorf("after Cleanup:\n%s", rules)
	}
}
