package nodeipam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllocator(t *testing.T) {
	tests := []struct {
		name    string
		cluster string
		mask    int
		occupy  map[string]string
		nodes   []string
		want    []string // "" for exhausted
	}{
		{"v4 in order", "10.42.0.0/16", 24, nil, []string{"a", "b", "c"}, []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"}},
		{"existing nodes are skipped", "10.42.0.0/16", 24, map[string]string{"x": "10.42.0.0/24", "y": "10.42.2.0/24"},
			[]string{"a", "b", "x"}, []string{"10.42.1.0/24", "10.42.3.0/24", "10.42.0.0/24"}},
		{"outside the cluster CIDR is ignored", "10.42.0.0/16", 24, map[string]string{"x": "10.99.0.0/24"},
			[]string{"a"}, []string{"10.42.0.0/24"}},
		{"exhausted", "10.42.0.0/23", 24, nil, []string{"a", "b", "c"}, []string{"10.42.0.0/24", "10.42.1.0/24", ""}},
		{"v6", "fd00:42::/56", 64, nil, []string{"a", "b"}, []string{"fd00:42::/64", "fd00:42:0:1::/64"}},
		{"same node twice", "10.42.0.0/16", 24, nil, []string{"a", "a"}, []string{"10.42.0.0/24", "10.42.0.0/24"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAllocator(netip.MustParsePrefix(tt.cluster), tt.mask)
			if err != nil {
				t.Fatal(err)
			}
			for node, p := range tt.occupy {
				a.Occupy(node, netip.MustParsePrefix(p))
			}
			for i, node := range tt.nodes {
				p, err := a.Allocate(node)
				got := p.String()
				if errors.Is(err, ErrExhausted) {
					got = ""
				}
				if got != tt.want[i] {
					t.Errorf("node %s got %q, want %q", node, got, tt.want[i])
				}
			}
		})
	}
}

func TestAllocatorReleaseAndConflicts(t *testing.T) {
	a, err := NewAllocator(netip.MustParsePrefix("10.42.0.0/23"), 24)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := a.Allocate("a")
	if a.Occupy("b", p) {
		t.Error("b occupied a's CIDR")
	}
	if _, err := a.Allocate("b"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate("c"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("c: %v, want exhausted", err)
	}
	a.Release("a")
	if got, err := a.Allocate("c"); err != nil || got != p {
		t.Errorf("c got %v %v, want a's %v", got, err, p)
	}
	if _, err := NewAllocator(netip.MustParsePrefix("10.42.0.0/16"), 8); err == nil {
		t.Error("a mask shorter than the cluster CIDR was accepted")
	}
}
