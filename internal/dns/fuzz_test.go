package dns

import (
	"net"
	"testing"

	"github.com/miekg/dns"
	"k8s.io/client-go/kubernetes/fake"
)

// recorder is a dns.ResponseWriter that keeps what is written.
type recorder struct {
	network string
	msgs    []*dns.Msg
}

func (r *recorder) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr {
	if r.network == "tcp" {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}
}
func (r *recorder) WriteMsg(m *dns.Msg) error   { r.msgs = append(r.msgs, m); return nil }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) Close() error                { return nil }
func (r *recorder) TsigStatus() error           { return nil }
func (r *recorder) TsigTimersOnly(bool)         {}
func (r *recorder) Hijack()                     {}

func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.default.svc.cluster.local.", dns.TypeA},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV},
		{"db-0.db.default.svc.cluster.local.", dns.TypeANY},
		{"ext.default.svc.cluster.local.", dns.TypeAAAA},
		{"10-42-0-5.default.pod.cluster.local.", dns.TypeA},
		{"big.default.svc.cluster.local.", dns.TypeSRV},
		{"example.org.", dns.TypeA},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	s, err := New(Config{Client: fake.NewSimpleClientset(clusterObjects()...), Upstreams: []string{}, Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	stop := make(chan struct{})
	f.Cleanup(func() { close(stop); s.factory.Shutdown() })
	s.factory.Start(stop)
	s.factory.WaitForCacheSync(stop)
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		for _, network := range []string{"udp", "tcp"} {
			w := &recorder{network: network}
			s.ServeDNS(w, req.Copy())
			if len(w.msgs) > 1 {
				t.Fatalf("%d replies", len(w.msgs))
			}
			if len(w.msgs) == 0 {
				if !req.Response {
					t.Fatal("a query got no reply")
				}
				continue
			}
			resp := w.msgs[0]
			if resp.Id != req.Id || !resp.Response {
				t.Fatalf("reply id %d response %v to query %d", resp.Id, resp.Response, req.Id)
			}
			b, err := resp.Pack()
			if err != nil {
				t.Fatalf("reply does not pack: %v", err)
			}
			if network == "udp" && len(b) > dns.MaxMsgSize {
				t.Fatalf("UDP reply of %d bytes", len(b))
			}
		}
	})
}
