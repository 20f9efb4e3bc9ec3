package main

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestClientGet(t *testing.T) {
	srv := httptest.NewServer(newServer(config{podName: "web-1"}, func() (string, error) { return "h", nil }, time.Now, func(int) {}).handler())
	defer srv.Close()
	// a port with no listener: connections are refused at once
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"three answers", []string{"-n", "3", srv.URL + "/"}, 0, []string{"ok web-1 ", "summary ok=3 fail=0 web-1=3"}},
		{"refused", []string{"-n", "2", closed}, 1, []string{"fail refused ", "summary ok=0 fail=2"}},
		{"refused allowed by -min 0", []string{"-min", "0", closed}, 0, []string{"fail refused "}},
		{"status", []string{srv.URL + "/exit?code=x"}, 1, []string{"fail status ", "HTTP status 400"}},
		{"usage", []string{}, 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb strings.Builder
			code := runClient(append([]string{"get"}, tt.args...), &out, &errb)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.wantCode, out.String(), errb.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestClientDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		hdr := dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 5}
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr, Target: "example.org."})
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	defer func() { _ = srv.Shutdown() }()

	var out, errb strings.Builder
	if code := runClient([]string{"dns", "-server", pc.LocalAddr().String(), "CNAME", "ext.default.svc.cluster.local"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if want := "rcode NOERROR\nCNAME example.org.\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	if code := runClient([]string{"dns", "BOGUS", "x"}, &out, &errb); code != 2 {
		t.Errorf("unknown type: exit %d, want 2", code)
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errb strings.Builder
	if code := runClient([]string{"post"}, &out, &errb); code != 2 || isClient([]string{"post"}) {
		t.Errorf("post: exit %d, isClient true", code)
	}
}
