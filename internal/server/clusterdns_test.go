package server

import (
	"net/netip"
	"testing"
)

func TestClusterDNSListen(t *testing.T) {
	adv := netip.MustParseAddr("192.0.2.7")
	cases := []struct {
		listen    string
		advertise netip.Addr
		want      string
	}{
		{":10053", adv, "192.0.2.7:10053"},
		{":10053", netip.Addr{}, "127.0.0.1:10053"},
		{"127.0.0.1:0", adv, "127.0.0.1:0"},
		{"0.0.0.0:53", adv, "0.0.0.0:53"},
		{"198.51.100.1:10053", adv, "198.51.100.1:10053"},
	}
	for _, c := range cases {
		if got := clusterDNSListen(c.listen, c.advertise); got != c.want {
			t.Errorf("clusterDNSListen(%q, %v) = %q, want %q", c.listen, c.advertise, got, c.want)
		}
	}
}

func TestDNSEndpoint(t *testing.T) {
	adv := netip.MustParseAddr("192.0.2.7")
	cases := []struct {
		addr      string
		advertise netip.Addr
		want      string
	}{
		{"192.0.2.7:10053", adv, "192.0.2.7:10053"},
		{"0.0.0.0:10053", adv, "192.0.2.7:10053"},
		{"[::]:10053", adv, "192.0.2.7:10053"},
		{"0.0.0.0:10053", netip.Addr{}, "0.0.0.0:10053"},
		{"127.0.0.1:41234", adv, "127.0.0.1:41234"},
		{"not an address", adv, "invalid AddrPort"},
	}
	for _, c := range cases {
		if got := dnsEndpoint(c.addr, c.advertise).String(); got != c.want {
			t.Errorf("dnsEndpoint(%q, %v) = %q, want %q", c.addr, c.advertise, got, c.want)
		}
	}
}

func TestClusterDNSServiceIP(t *testing.T) {
	cases := []struct {
		cidr, ip, want string
		ok             bool
	}{
		{"", "", "10.43.0.10", true},
		{"10.96.0.0/12", "", "10.96.0.10", true},
		{"", "10.43.1.53", "10.43.1.53", true},
		{"", "10.44.0.10", "", false},
		{"", "dns", "", false},
	}
	for _, c := range cases {
		s := &Server{cfg: Config{ServiceCIDR: c.cidr, ClusterDNSServiceIP: c.ip}}
		got, err := s.clusterDNSServiceIP()
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("%q %q: %q, %v; want %q", c.cidr, c.ip, got, err, c.want)
		}
	}
}
