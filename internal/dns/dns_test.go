package dns

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func ptr[T any](v T) *T { return &v }

func service(name string, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	mutate(s)
	return s
}

type ep struct {
	ip, host string
	ready    bool
}

func slice(svc string, port string, portNum int32, eps ...ep) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: svc + "-x", Namespace: "default",
		Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: ptr(port), Port: ptr(portNum), Protocol: ptr(corev1.ProtocolTCP)}}}
	for _, e := range eps {
		de := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(e.ready)}}
		if e.host != "" {
			de.Hostname = ptr(e.host)
		}
		sl.Endpoints = append(sl.Endpoints, de)
	}
	return sl
}

// clusterObjects are the objects the unit tests answer from.
func clusterObjects() []runtime.Object {
	big := slice("big", "http", 80)
	for i := range 60 {
		big.Endpoints = append(big.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.42.1.%d", i+1)}})
	}
	return []runtime.Object{
		service("web", func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.43.0.10", []string{"10.43.0.10"} }),
		slice("web", "http", 8080, ep{ip: "10.42.0.5", ready: true}),
		service("db", func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"}
			s.Spec.Ports = []corev1.ServicePort{{Name: "pg", Port: 5432, Protocol: corev1.ProtocolTCP}}
		}),
		slice("db", "pg", 5432, ep{"10.42.0.7", "db-0", true}, ep{"10.42.0.8", "db-1", true}, ep{"10.42.0.9", "db-2", false}),
		service("ext", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName, s.Spec.Ports = corev1.ServiceTypeExternalName, "example.org", nil
		}),
		service("big", func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }),
		big,
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}, Status: corev1.PodStatus{PodIP: "10.42.0.5"}},
	}
}

// fakeUpstream is a resolver on loopback that knows example.org. and a
// big TXT record.
func fakeUpstream(t *testing.T) string {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch {
		case q.Name == "example.org." && q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		case q.Name == "big.example.org.":
			for i := range 20 {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
					Txt: []string{fmt.Sprintf("%02d%s", i, strings.Repeat("x", 60))}})
			}
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Logger = quietLogger()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatal("dns server not ready")
	}
	return s
}

// rdata is "TYPE data" of each record, sorted.
func rdata(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		out = append(out, dns.TypeToString[rr.Header().Rrtype]+" "+strings.TrimPrefix(rr.String(), rr.Header().String()))
	}
	slices.Sort(out)
	return out
}

func query(t *testing.T, addr, network, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: 10 * time.Second, UDPSize: 65535}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return resp
}

func TestServeDNS(t *testing.T) {
	s := startServer(t, Config{Client: fake.NewSimpleClientset(clusterObjects()...), Upstreams: []string{fakeUpstream(t)}})
	cases := []struct {
		name    string
		qname   string
		qtype   uint16
		network string
		rcode   int
		answers []string
		nAnswer int // when answers is nil: the number of answers
		tc      bool
	}{
		{"cluster IP", "web.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A 10.43.0.10"}, 0, false},
		{"cluster IP over TCP, any case", "WEB.Default.svc.cluster.local.", dns.TypeA, "tcp", dns.RcodeSuccess, []string{"A 10.43.0.10"}, 0, false},
		{"no AAAA", "web.default.svc.cluster.local.", dns.TypeAAAA, "udp", dns.RcodeSuccess, []string{}, 0, false},
		{"headless: ready endpoints", "db.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A 10.42.0.7", "A 10.42.0.8"}, 0, false},
		{"stateful pod hostname", "db-1.db.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A 10.42.0.8"}, 0, false},
		{"not ready hostname", "db-2.db.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeNameError, []string{}, 0, false},
		{"SRV of a cluster IP service", "_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, "udp", dns.RcodeSuccess,
			[]string{"SRV 0 100 80 web.default.svc.cluster.local."}, 0, false},
		{"SRV of a headless service", "_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, "tcp", dns.RcodeSuccess,
			[]string{"SRV 0 100 5432 db-0.db.default.svc.cluster.local.", "SRV 0 100 5432 db-1.db.default.svc.cluster.local."}, 0, false},
		{"SRV wrong protocol", "_http._udp.web.default.svc.cluster.local.", dns.TypeSRV, "udp", dns.RcodeNameError, []string{}, 0, false},
		{"external name", "ext.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"CNAME example.org."}, 0, false},
		{"pod", "10-42-0-5.default.pod.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A 10.42.0.5"}, 0, false},
		{"pod in another namespace", "10-42-0-5.other.pod.cluster.local.", dns.TypeA, "udp", dns.RcodeNameError, []string{}, 0, false},
		{"unknown service", "nope.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeNameError, []string{}, 0, false},
		{"unknown name in the domain", "x.y.cluster.local.", dns.TypeA, "udp", dns.RcodeNameError, []string{}, 0, false},
		{"namespace", "default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, []string{}, 0, false},
		{"big answer over UDP is truncated", "big.default.svc.cluster.local.", dns.TypeA, "udp", dns.RcodeSuccess, nil, -1, true},
		{"big answer over UDP with EDNS", "big.default.svc.cluster.local.", dns.TypeA, "udp+edns", dns.RcodeSuccess, nil, 60, false},
		{"big answer over TCP", "big.default.svc.cluster.local.", dns.TypeA, "tcp", dns.RcodeSuccess, nil, 60, false},
		{"forwarded", "example.org.", dns.TypeA, "udp", dns.RcodeSuccess, []string{"A 192.0.2.1"}, 0, false},
		{"forwarded over TCP", "example.org.", dns.TypeA, "tcp", dns.RcodeSuccess, []string{"A 192.0.2.1"}, 0, false},
		{"forwarded NXDOMAIN", "nothing.example.org.", dns.TypeA, "udp", dns.RcodeNameError, []string{}, 0, false},
		{"forwarded, truncated over UDP", "big.example.org.", dns.TypeTXT, "udp", dns.RcodeSuccess, nil, -1, true},
		{"forwarded, whole over TCP", "big.example.org.", dns.TypeTXT, "tcp", dns.RcodeSuccess, nil, 20, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			network, edns := c.network, uint16(0)
			if network == "udp+edns" {
				network, edns = "udp", 4096
			}
			resp := query(t, s.Addr(), network, c.qname, c.qtype, edns)
			if resp.Rcode != c.rcode || resp.Truncated != c.tc {
				t.Fatalf("rcode %s truncated %v, want %s %v", dns.RcodeToString[resp.Rcode], resp.Truncated, dns.RcodeToString[c.rcode], c.tc)
			}
			got := rdata(resp.Answer)
			switch {
			case c.answers != nil && !slices.Equal(got, c.answers):
				t.Fatalf("answers %q, want %q", got, c.answers)
			case c.answers == nil && c.nAnswer >= 0 && len(got) != c.nAnswer:
				t.Fatalf("%d answers, want %d", len(got), c.nAnswer)
			case c.answers == nil && c.nAnswer < 0 && len(got) >= 60:
				t.Fatalf("%d answers in a truncated reply", len(got))
			}
		})
	}
}

func TestNoUpstream(t *testing.T) {
	// a closed port: the query fails with SERVFAIL instead of hanging
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	_ = pc.Close()
	s := startServer(t, Config{Client: fake.NewSimpleClientset(), Upstreams: []string{dead}, ForwardTimeout: 500 * time.Millisecond})
	if resp := query(t, s.Addr(), "udp", "example.org.", dns.TypeA, 0); resp.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

func TestReadResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("search example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions ndots:2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResolvConf(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(got, want) {
		t.Fatalf("upstreams %q, want %q", got, want)
	}
	if _, err := ReadResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing resolv.conf accepted")
	}
	if _, err := New(Config{Client: fake.NewSimpleClientset(), ResolvConf: path, Domain: "bad..domain"}); err == nil {
		t.Fatal("bad domain accepted")
	}
}
