package podnet

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name, cidr, ip string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	return n
}

func TestDesiredRoutes(t *testing.T) {
	cluster, service := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.43.0.0/16")
	svc := Route{Dst: service, Dev: "lo"}
	r := func(dst, via string) Route {
		rt := Route{Dst: netip.MustParsePrefix(dst)}
		if via != "" {
			rt.Via = netip.MustParseAddr(via)
		}
		return rt
	}
	tests := []struct {
		name    string
		nodes   []*corev1.Node
		service netip.Prefix
		want    []Route
		own     string
	}{
		{"alone", []*corev1.Node{node("a", "10.244.0.0/24", "172.31.0.10")}, service,
			[]Route{svc, r("10.244.0.0/16", "")}, "10.244.0.0/24"},
		{"no service CIDR", nil, netip.Prefix{}, []Route{r("10.244.0.0/16", "")}, ""},
		{"three nodes", []*corev1.Node{node("c", "10.244.2.0/24", "172.31.0.12"), node("a", "10.244.0.0/24", "172.31.0.10"),
			node("b", "10.244.1.0/24", "172.31.0.11")}, service,
			[]Route{svc, r("10.244.0.0/16", ""), r("10.244.1.0/24", "172.31.0.11"), r("10.244.2.0/24", "172.31.0.12")},
			"10.244.0.0/24"},
		{"skips nodes without CIDR, IP, or outside the cluster", []*corev1.Node{node("a", "", "172.31.0.10"),
			node("b", "10.244.1.0/24", ""), node("c", "10.99.0.0/24", "172.31.0.12"), node("d", "10.244.3.0/24", "10.244.9.9"),
			node("e", "10.244.4.0/24", "::1"), node("f", "10.0.0.0/8", "172.31.0.13"), node("g", "10.244.5.7/24", "172.31.0.14")}, service,
			[]Route{svc, r("10.244.0.0/16", ""), r("10.244.5.0/24", "172.31.0.14")}, ""},
		{"two nodes claim one CIDR: the lower gateway", []*corev1.Node{node("b", "10.244.1.0/24", "172.31.0.12"),
			node("c", "10.244.1.0/24", "172.31.0.11")}, service,
			[]Route{svc, r("10.244.0.0/16", ""), r("10.244.1.0/24", "172.31.0.11")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Desired(ModeHostGW, "a", tt.nodes, cluster, tt.service)
			got, own := plan.Routes, plan.Own
			if !slices.Equal(got, tt.want) {
				t.Errorf("routes:\n got %v\nwant %v", got, tt.want)
			}
			if own.String() != tt.own && !(tt.own == "" && !own.IsValid()) {
				t.Errorf("own CIDR %v, want %q", own, tt.own)
			}
		})
	}
}

func TestDesiredVXLAN(t *testing.T) {
	cluster := netip.MustParsePrefix("10.244.0.0/16")
	nodes := []*corev1.Node{node("a", "10.244.0.0/24", "192.0.2.10"), node("b", "10.244.1.0/24", "198.51.100.7"),
		node("c", "10.244.2.0/24", "203.0.113.9"), node("d", "10.244.2.0/24", "203.0.113.8"), node("e", "10.244.3.0/24", "")}
	plan := Desired(ModeVXLAN, "a", nodes, cluster, netip.Prefix{})
	wantRoutes := []Route{{Dst: cluster},
		{Dst: netip.MustParsePrefix("10.244.1.0/24"), Via: netip.MustParseAddr("10.244.1.0"), Dev: VXLANDevice},
		{Dst: netip.MustParsePrefix("10.244.2.0/24"), Via: netip.MustParseAddr("10.244.2.0"), Dev: VXLANDevice}}
	if !slices.Equal(plan.Routes, wantRoutes) {
		t.Errorf("routes:\n got %v\nwant %v", plan.Routes, wantRoutes)
	}
	wantPeers := []Peer{{VTEP: netip.MustParseAddr("10.244.1.0"), MAC: "0e:6b:c6:33:64:07", Remote: netip.MustParseAddr("198.51.100.7")},
		{VTEP: netip.MustParseAddr("10.244.2.0"), MAC: "0e:6b:cb:00:71:08", Remote: netip.MustParseAddr("203.0.113.8")}}
	if !slices.Equal(plan.Peers, wantPeers) {
		t.Errorf("peers:\n got %v\nwant %v", plan.Peers, wantPeers)
	}
	if plan.Own != netip.MustParsePrefix("10.244.0.0/24") || plan.Self != netip.MustParseAddr("192.0.2.10") {
		t.Errorf("own %v self %v", plan.Own, plan.Self)
	}
}

func TestParseRoutes(t *testing.T) {
	got, err := parseRoutes([]byte(`[{"type":"unreachable","dst":"10.244.0.0/16","flags":[]},` +
		`{"dst":"10.244.3.0/24","gateway":"172.31.9.3","dev":"d0","flags":[]},{"dst":"10.1.2.3","gateway":"172.31.9.4"},` +
		`{"dst":"10.43.0.0/16","dev":"lo","scope":"link","flags":[]}]` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{{Dst: netip.MustParsePrefix("10.244.0.0/16")},
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Via: netip.MustParseAddr("172.31.9.3")},
		{Dst: netip.MustParsePrefix("10.1.2.3/32"), Via: netip.MustParseAddr("172.31.9.4")},
		{Dst: netip.MustParsePrefix("10.43.0.0/16"), Dev: "lo"}}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if rs, err := parseRoutes([]byte("\n")); err != nil || len(rs) != 0 {
		t.Errorf("empty output: %v, %v", rs, err)
	}
	if _, err := parseRoutes([]byte(`[{"dst":"nonsense"}]`)); err == nil {
		t.Error("a bad destination parsed")
	}
}

// fakeTable records the routes in memory.
type fakeTable struct{ routes []Route }

func (f *fakeTable) List(context.Context) ([]Route, error) { return slices.Clone(f.routes), nil }
func (f *fakeTable) Replace(_ context.Context, r Route) error {
	f.routes = slices.DeleteFunc(f.routes, func(o Route) bool { return o.Dst == r.Dst })
	f.routes = append(f.routes, r)
	return nil
}
func (f *fakeTable) Delete(_ context.Context, r Route) error {
	f.routes = slices.DeleteFunc(f.routes, func(o Route) bool { return o == r })
	return nil
}

type fakeMasq struct{ applied []netip.Prefix }

func (f *fakeMasq) Apply(pod, _ netip.Prefix) error { f.applied = append(f.applied, pod); return nil }
func (f *fakeMasq) Cleanup() error                  { f.applied = nil; return nil }

func TestSyncReplacesAndRemoves(t *testing.T) {
	tbl := &fakeTable{routes: []Route{{Dst: netip.MustParsePrefix("10.244.7.0/24"), Via: netip.MustParseAddr("172.31.0.77")}}}
	masq := &fakeMasq{}
	p, err := New(Config{Client: fake.NewClientset(), NodeName: "a", ClusterCIDR: "10.244.0.0/16", Routes: tbl, Masquerade: masq})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nodes := []*corev1.Node{node("a", "10.244.0.0/24", "172.31.0.10"), node("b", "10.244.1.0/24", "172.31.0.11")}
	if err := p.Sync(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	want := []Route{{Dst: netip.MustParsePrefix("10.244.0.0/16")}, {Dst: netip.MustParsePrefix("10.244.1.0/24"), Via: netip.MustParseAddr("172.31.0.11")}}
	if got, _ := tbl.List(ctx); !sameRoutes(got, want) {
		t.Errorf("after sync: %v, want %v", got, want)
	}
	// b moves, a's masquerade is not reapplied
	nodes[1] = node("b", "10.244.1.0/24", "172.31.0.21")
	if err := p.Sync(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	want[1].Via = netip.MustParseAddr("172.31.0.21")
	if got, _ := tbl.List(ctx); !sameRoutes(got, want) {
		t.Errorf("after b moved: %v, want %v", got, want)
	}
	if len(masq.applied) != 1 || masq.applied[0] != netip.MustParsePrefix("10.244.0.0/24") {
		t.Errorf("masquerade applied %v, want once for 10.244.0.0/24", masq.applied)
	}
	// b deleted
	if err := p.Sync(ctx, nodes[:1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := tbl.List(ctx); !sameRoutes(got, want[:1]) {
		t.Errorf("after b was deleted: %v, want %v", got, want[:1])
	}
	if err := p.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := tbl.List(ctx); len(got) != 0 || masq.applied != nil {
		t.Errorf("after cleanup: routes %v, masquerade %v", got, masq.applied)
	}
}

func sameRoutes(a, b []Route) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y Route) int { return x.Dst.Addr().Compare(y.Dst.Addr())*2 + x.Via.Compare(y.Via) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

func TestNewRejects(t *testing.T) {
	c := fake.NewClientset()
	for _, cfg := range []Config{{NodeName: "a", ClusterCIDR: "10.244.0.0/16"}, {Client: c, ClusterCIDR: "10.244.0.0/16"},
		{Client: c, NodeName: "a", ClusterCIDR: "fd00::/64"}, {Client: c, NodeName: "a", ClusterCIDR: "10.244.0.0/16", ServiceCIDR: "x"}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}
