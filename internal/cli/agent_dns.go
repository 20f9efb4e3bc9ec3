package cli

import (
	"fmt"
	"net/netip"
)

// parseIPv4List parses comma-separated IPv4 addresses (--cluster-dns).
func parseIPv4List(s string) ([]string, error) {
	var out []string
	for _, p := range splitList(s) {
		a, err := netip.ParseAddr(p)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("%q is not an IPv4 address", p)
		}
		out = append(out, a.String())
	}
	return out, nil
}
