// Package podnet connects the pod networks of a cluster's nodes (host-gw):
// every agent watches the Nodes and, in its own network namespace, routes
// each other node's spec.podCIDR via that node's InternalIP, keeps an
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
	// Via is the gateway; the zero Addr means an unreachable route.
	Via netip.Addr
}

func (r Route) String() string {
	if !r.Via.IsValid() {
		return "unreachable " + r.Dst.String()
	}
	return r.Dst.String() + " via " + r.Via.String()
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
	want, own := DesiredRoutes(p.cfg.NodeName, nodes, p.cluster, p.service)
	have, err := p.cfg.Routes.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
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

// DesiredRoutes returns the routes node self needs: an unreachable route
// for the cluster CIDR and the service CIDR (if valid), and a route via
// its InternalIP to the pod CIDR of every other node that has both. It
// also returns self's own pod CIDR (invalid if unknown). Pod CIDRs outside
// the cluster CIDR and gateways that are not IPv4 are skipped.
func DesiredRoutes(self string, nodes []*corev1.Node, cluster, service netip.Prefix) ([]Route, netip.Prefix) {
	out := []Route{{Dst: cluster}}
	if service.IsValid() {
		out = append(out, Route{Dst: service})
	}
	var own netip.Prefix
	for _, n := range nodes {
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() || !cluster.Contains(cidr.Addr()) || cidr.Bits() < cluster.Bits() {
			continue
		}
		cidr = cidr.Masked()
		if n.Name == self {
			own = cidr
			continue
		}
		via := internalIP(n)
		if !via.IsValid() || cluster.Contains(via) {
			continue
		}
		out = append(out, Route{Dst: cidr, Via: via})
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
	return dedup, own
}

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
