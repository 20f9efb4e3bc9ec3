package server

import "testing"

func TestAdvertiseAddress(t *testing.T) {
	for _, host := range []string{"192.0.2.1", "127.0.0.1", "2001:db8::1"} {
		if got := advertiseAddress(host); got.String() != host {
			t.Errorf("advertiseAddress(%s) = %s", host, got)
		}
	}
	// a wildcard listener names a real address of this machine, or none
	for _, host := range []string{"0.0.0.0", "::", ""} {
		if got := advertiseAddress(host); got.IsValid() && (got.IsUnspecified() || got.IsLoopback() || !got.Is4()) {
			t.Errorf("advertiseAddress(%q) = %s", host, got)
		}
	}
}

func TestServiceRanges(t *testing.T) {
	cases := []struct {
		cidr, ports string
		want        string
		ok          bool
	}{
		{"", "", "10.43.0.0/16 30000-32767", true},
		{"10.96.0.0/12", "20000-20099", "10.96.0.0/12 20000-20099", true},
		{"10.96.0.0", "", "", false},
		{"", "1-2-3", "", false},
	}
	for _, c := range cases {
		s := &Server{cfg: Config{ServiceCIDR: c.cidr, ServiceNodePortRange: c.ports}}
		p, r, err := s.serviceRanges()
		if (err == nil) != c.ok || (c.ok && p.String()+" "+r.String() != c.want) {
			t.Errorf("%q %q: %s %s %v", c.cidr, c.ports, p, r, err)
		}
	}
}
