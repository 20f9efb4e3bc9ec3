// Package podnet connects the pod networks of a cluster's nodes: every
// agent watches the Nodes and, in its own network namespace, routes each
// other node's spec.podCIDR via that node's InternalIP (host-gw) or through
// a VXLAN device to it (vxlan, for nodes on different L2 networks), keeps an
// unreachable route for the whole cluster and service CIDRs (so a pod CIDR
// without a route never follows a default route off the machine) and
// masquerades pod traffic that leaves the cluster CIDR (nftables table
// `ip skiff-podnet`). Routes are programmed with iproute2 and tagged with
// protocol RouteProtocol, so a restart finds and replaces its own routes and
// leaves every other route alone.
package podnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// RouteProtocol tags the routes podnet installs (ip route ... proto 211).
const RouteProtocol = 211

// Mode names how pod traffic crosses nodes.
const (
	// ModeHostGW routes pod CIDRs via the nodes' InternalIPs; the nodes
	// must share an L2 network.
	ModeHostGW = "host-gw"
	// ModeVXLAN routes pod CIDRs through the VXLAN device VXLANDevice,
	// whose packets go to the nodes' InternalIPs over UDP; the nodes need
	// only IP connectivity.
	ModeVXLAN = "vxlan"
	// ModeNone installs nothing.
	ModeNone = "none"
)

// Config configures the pod network of one node.
type Config struct {
	// Client reads the Nodes (required).
	Client kubernetes.Interface
	// NodeName is this node (required): its own pod CIDR is on its bridge
	// and gets no route.
	NodeName string
	// Mode is ModeHostGW (default) or ModeVXLAN.
	Mode string
	// ClusterCIDR is the range every pod CIDR is cut from (required).
	ClusterCIDR string
	// ServiceCIDR, when set, also gets an unreachable route.
	ServiceCIDR string
	// Routes programs the routes; nil means iproute2 in this process's
	// network namespace.
	Routes RouteTable
	// Masquerade programs the egress masquerade; nil means nftables in
	// this process's network namespace.
	Masquerade Masquerader
	// Overlay programs the VXLAN device and its peers (ModeVXLAN); nil
	// means iproute2 in this process's network namespace.
	Overlay Overlay
	// ResyncInterval re-applies the routes even without a Node change (so
	// a route removed by hand comes back); 0 means 30s.
	ResyncInterval time.Duration
	// Logger receives the logs.
	Logger *slog.Logger
}

// Route is one route podnet owns.
type Route struct {
	// Dst is the destination prefix.
	Dst netip.Prefix
	// Via is the gateway; the zero Addr means an unreachable route, or,
	// with Dev, a route straight to that device.
	Via netip.Addr
	// Dev, when set, is the device the gateway is on (onlink: the VXLAN
	// device), or without Via the device the destination is on.
	Dev string
}

func (r Route) String() string {
	if !r.Via.IsValid() {
		if r.Dev != "" {
			return r.Dst.String() + " dev " + r.Dev
		}
		return "unreachable " + r.Dst.String()
	}
	if r.Dev != "" {
		return r.Dst.String() + " via " + r.Via.String() + " dev " + r.Dev + " onlink"
	}
	return r.Dst.String() + " via " + r.Via.String()
}

// Peer is another node's VXLAN endpoint.
type Peer struct {
	// VTEP is the address of its VXLAN device (the first address of its
	// pod CIDR), the gateway of the route to its pods.
	VTEP netip.Addr
	// MAC is its VXLAN device's MAC address (VTEPMAC of Remote).
	MAC string
	// Remote is its InternalIP, where the UDP packets go.
	Remote netip.Addr
}

// Overlay programs the VXLAN device of this node and its peers.
type Overlay interface {
	// Ensure makes the device (VNI VXLANID, UDP port VXLANPort, the MAC
	// VTEPMAC(local)) with address vtep/32 and sets it up.
	Ensure(ctx context.Context, local, vtep netip.Addr) error
	// SetPeers makes the device's neighbour and forwarding entries
	// exactly peers.
	SetPeers(ctx context.Context, peers []Peer) error
	// Cleanup deletes the device.
	Cleanup(ctx context.Context) error
}

// VXLAN device parameters.
const (
	VXLANDevice = "skiff.vxlan"
	VXLANID     = 1
	VXLANPort   = 4789
	// vxlanOverhead is what VXLAN adds to a packet (outer IPv4, UDP,
	// VXLAN and Ethernet headers).
	vxlanOverhead = 50
)

// VTEPMAC is the VXLAN device MAC of the node with InternalIP ip: a
// locally administered unicast address that holds the IP, so that peers
// need no annotation to learn it.
func VTEPMAC(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("0e:6b:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// RouteTable lists, replaces and deletes the routes tagged RouteProtocol.
type RouteTable interface {
	List(ctx context.Context) ([]Route, error)
	Replace(ctx context.Context, r Route) error
	Delete(ctx context.Context, r Route) error
}

// Masquerader programs masquerading of traffic from podCIDR to
// destinations outside clusterCIDR, and removes it.
type Masquerader interface {
	Apply(podCIDR, clusterCIDR netip.Prefix) error
	Cleanup() error
}

// PodNet keeps one node's routes in step with the Nodes.
type PodNet struct {
	cfg     Config
	cluster netip.Prefix
	service netip.Prefix
	log     *slog.Logger

	mu       sync.Mutex
	masqFor  netip.Prefix // pod CIDR the masquerade was applied for
	lastSync []Route
}

// New checks cfg.
func New(cfg Config) (*PodNet, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, errors.New("podnet: a client and a node name are required")
	}
	cluster, err := netip.ParsePrefix(cfg.ClusterCIDR)
	if err != nil || !cluster.Addr().Is4() {
		return nil, fmt.Errorf("podnet: cluster CIDR %q: want an IPv4 CIDR", cfg.ClusterCIDR)
	}
	p := &PodNet{cfg: cfg, cluster: cluster.Masked()}
	if cfg.ServiceCIDR != "" {
		svc, err := netip.ParsePrefix(cfg.ServiceCIDR)
		if err != nil || !svc.Addr().Is4() {
			return nil, fmt.Errorf("podnet: service CIDR %q: want an IPv4 CIDR", cfg.ServiceCIDR)
		}
		p.service = svc.Masked()
	}
	if p.cfg.Routes == nil {
		p.cfg.Routes = IPRoute{}
	}
	if p.cfg.Masquerade == nil {
		p.cfg.Masquerade = NFTables{}
	}
	switch p.cfg.Mode {
	case "":
		p.cfg.Mode = ModeHostGW
	case ModeHostGW, ModeVXLAN:
	default:
		return nil, fmt.Errorf("podnet: mode %q: use %s or %s", p.cfg.Mode, ModeHostGW, ModeVXLAN)
	}
	if p.cfg.Overlay == nil {
		p.cfg.Overlay = IPVXLAN{}
	}
	if p.cfg.ResyncInterval <= 0 {
		p.cfg.ResyncInterval = 30 * time.Second
	}
	if p.cfg.Logger == nil {
		p.cfg.Logger = slog.Default()
	}
	p.log = p.cfg.Logger.With("component", "podnet")
	return p, nil
}

// Run enables forwarding, watches the Nodes and programs the routes until
// ctx ends. The routes and the masquerade stay when it returns, so pods
// keep their connectivity across an agent restart.
func (p *PodNet) Run(ctx context.Context) error {
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644); err != nil {
		p.log.Warn("cannot enable IPv4 forwarding; pods on other nodes are unreachable", "err", err)
	}
	factory := informers.NewSharedInformerFactory(p.cfg.Client, 0)
	inf := factory.Core().V1().Nodes()
	kick := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke,
		UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke}); err != nil {
		return fmt.Errorf("podnet: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return nil
	}
	lister := inf.Lister()
	tick := time.NewTicker(p.cfg.ResyncInterval)
	defer tick.Stop()
	for {
		nodes, err := lister.List(labels.Everything())
		if err == nil {
			err = p.Sync(ctx, nodes)
		}
		if err != nil {
			p.log.Error("pod network sync failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		case <-tick.C:
		}
	}
}

// Sync programs the routes and the masquerade for nodes.
func (p *PodNet) Sync(ctx context.Context, nodes []*corev1.Node) error {
	plan := Desired(p.cfg.Mode, p.cfg.NodeName, nodes, p.cluster, p.service)
	want, own := plan.Routes, plan.Own
	var errs []error
	if p.cfg.Mode == ModeVXLAN {
		if !own.IsValid() || !plan.Self.IsValid() {
			// no device yet: only the unreachable routes
			want = slices.DeleteFunc(slices.Clone(want), func(r Route) bool { return r.Dev != "" })
		} else if err := p.cfg.Overlay.Ensure(ctx, plan.Self, own.Addr()); err != nil {
			return err
		} else if err := p.cfg.Overlay.SetPeers(ctx, plan.Peers); err != nil {
			errs = append(errs, err)
		}
	}
	have, err := p.cfg.Routes.List(ctx)
	if err != nil {
		return err
	}
	for _, r := range have {
		if !slices.Contains(want, r) && !containsDst(want, r.Dst) {
			if err := p.cfg.Routes.Delete(ctx, r); err != nil {
				errs = append(errs, err)
			} else {
				p.log.Info("route removed", "route", r.String())
			}
		}
	}
	for _, r := range want {
		if slices.Contains(have, r) {
			continue
		}
		if err := p.cfg.Routes.Replace(ctx, r); err != nil {
			errs = append(errs, err)
		} else {
			p.log.Info("route installed", "route", r.String())
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastSync = want
	if own.IsValid() && own != p.masqFor {
		if err := p.cfg.Masquerade.Apply(own, p.cluster); err != nil {
			errs = append(errs, err)
		} else {
			p.masqFor = own
			p.log.Info("pod egress masquerade programmed", "podCIDR", own.String(), "clusterCIDR", p.cluster.String())
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes every route podnet installed and its nftables table.
func (p *PodNet) Cleanup(ctx context.Context) error {
	have, err := p.cfg.Routes.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range have {
		errs = append(errs, p.cfg.Routes.Delete(ctx, r))
	}
	errs = append(errs, p.cfg.Masquerade.Cleanup())
	if p.cfg.Mode == ModeVXLAN {
		errs = append(errs, p.cfg.Overlay.Cleanup(ctx))
	}
	return errors.Join(errs...)
}

func containsDst(rs []Route, dst netip.Prefix) bool {
	// a route to the same destination with another gateway is replaced,
	// not deleted first (no window without a route)
	for _, r := range rs {
		if r.Dst == dst {
			return true
		}
	}
	return false
}

// Plan is what one node needs.
type Plan struct {
	// Routes are the routes podnet owns.
	Routes []Route
	// Own is the node's pod CIDR (invalid if unknown) and Self its
	// InternalIP (invalid if unknown).
	Own  netip.Prefix
	Self netip.Addr
	// Peers are the other nodes' VXLAN endpoints (ModeVXLAN).
	Peers []Peer
}

// Desired returns what node self needs in mode: an unreachable route for
// the cluster CIDR, a route to the loopback device for the service CIDR
// (if valid; see serviceRoute), and a route to the pod CIDR of every other
// node that has one and an InternalIP: via that IP
// (host-gw), or via the first address of its pod CIDR on the VXLAN device
// (vxlan, with a peer for it). Pod CIDRs outside the cluster CIDR and
// InternalIPs that are not IPv4 are skipped.
func Desired(mode, self string, nodes []*corev1.Node, cluster, service netip.Prefix) Plan {
	out := []Route{{Dst: cluster}}
	if service.IsValid() {
		out = append(out, serviceRoute(service))
	}
	var plan Plan
	for _, n := range nodes {
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() || !cluster.Contains(cidr.Addr()) || cidr.Bits() < cluster.Bits() {
			cidr = netip.Prefix{}
		}
		cidr = cidr.Masked()
		ip := internalIP(n)
		if ip.IsValid() && cluster.Contains(ip) {
			ip = netip.Addr{}
		}
		if n.Name == self {
			plan.Own, plan.Self = cidr, ip
			continue
		}
		if !cidr.IsValid() || !ip.IsValid() {
			continue
		}
		if mode == ModeVXLAN {
			out = append(out, Route{Dst: cidr, Via: cidr.Addr(), Dev: VXLANDevice})
			plan.Peers = append(plan.Peers, Peer{VTEP: cidr.Addr(), MAC: VTEPMAC(ip), Remote: ip})
			continue
		}
		out = append(out, Route{Dst: cidr, Via: ip})
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Dst.Addr().Compare(out[j].Dst.Addr()); c != 0 {
			return c < 0
		}
		return out[i].Dst.Bits() < out[j].Dst.Bits()
	})
	// two nodes claiming one CIDR: keep the first (by name order of the
	// lister is not stable, so by gateway)
	dedup := out[:0]
	for _, r := range out {
		if len(dedup) > 0 && dedup[len(dedup)-1].Dst == r.Dst {
			if r.Via.Compare(dedup[len(dedup)-1].Via) < 0 {
				dedup[len(dedup)-1] = r
			}
			continue
		}
		dedup = append(dedup, r)
	}
	plan.Routes = dedup
	// two nodes claiming one CIDR: the peer with the lower InternalIP
	best := map[netip.Addr]Peer{}
	for _, pe := range plan.Peers {
		if o, ok := best[pe.VTEP]; !ok || pe.Remote.Less(o.Remote) {
			best[pe.VTEP] = pe
		}
	}
	plan.Peers = plan.Peers[:0]
	for _, pe := range best {
		plan.Peers = append(plan.Peers, pe)
	}
	sort.Slice(plan.Peers, func(i, j int) bool { return plan.Peers[i].VTEP.Less(plan.Peers[j].VTEP) })
	return plan
}

// serviceRoute keeps the service CIDR on the node: cluster IPs are only
// ever DNAT targets of the proxy, so a packet to one that no rule
// translated must not follow a default route off the machine. An
// unreachable route would do that but also fail the node's own
// connections to cluster IPs (hostNetwork pods, ClusterFirstWithHostNet
// DNS): a local socket's route is looked up before the proxy's output
// rule translates it. A route to the loopback device lets the lookup
// succeed; untranslated packets end on the loopback (dropped: not a local
// address) instead of leaving.
func serviceRoute(service netip.Prefix) Route { return Route{Dst: service, Dev: "lo"} }

// internalIP is the node's first IPv4 InternalIP.
func internalIP(n *corev1.Node) netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() && !ip.IsLoopback() && !ip.IsUnspecified() {
			return ip
		}
	}
	return netip.Addr{}
}
