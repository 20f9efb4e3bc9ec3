package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Model is the desired rule set: one entry per Service (key
// "namespace/name") that has something to program. A Service's entry is
// replaced, never mutated, so the applier can tell an unchanged Service
// by pointer.
type Model map[string]*Service

// Service is what one Service owns in the table: its chains, the
// affinity sets of its endpoints and its elements in the dispatch maps.
type Service struct {
	// Chains maps chain names (service, external and endpoint chains) to
	// their rules.
	Chains map[string][]Rule
	// AffinitySets maps set names to their timeout (sessionAffinity
	// ClientIP: one set of client addresses per endpoint).
	AffinitySets map[string]time.Duration
	// IPs dispatch (destination IP, protocol, port): ClusterIPs,
	// LoadBalancer ingress IPs and external IPs.
	IPs map[IPPort]Verdict
	// NodePorts dispatch (protocol, port) on the node's local addresses.
	NodePorts map[NodePort]Verdict
}

// IPPort is a destination the proxy intercepts.
type IPPort struct {
	IP    netip.Addr
	Proto uint8
	Port  uint16
}

// NodePort is a protocol and port on every local address of the node.
type NodePort struct {
	Proto uint8
	Port  uint16
}

// VerdictKind is what happens to a new connection to a dispatched
// destination.
type VerdictKind uint8

// Verdicts: jump to a chain (Goto), or, when there is no endpoint, refuse
// at once (Reject: TCP reset or ICMP port unreachable) or silently (Drop:
// externalTrafficPolicy Local on a node without local endpoints).
const (
	Goto VerdictKind = iota
	Reject
	Drop
)

// Verdict is a dispatch map element's value.
type Verdict struct {
	Kind  VerdictKind
	Chain string // for Goto
}

// RuleKind says what one rule of a chain does.
type RuleKind uint8

// Rule kinds.
const (
	// RuleMasq marks the packet for masquerading (external traffic with
	// externalTrafficPolicy Cluster).
	RuleMasq RuleKind = iota
	// RuleHairpin marks the packet for masquerading when its source is IP
	// (an endpoint reaching itself through the service).
	RuleHairpin
	// RuleAffinityCheck goes to Target when the source address is in Set.
	RuleAffinityCheck
	// RuleAffinityUpdate adds or refreshes the source address in Set.
	RuleAffinityUpdate
	// RuleBalance goes to one of Targets at random.
	RuleBalance
	// RuleDNAT rewrites the destination to IP:Port for Proto.
	RuleDNAT
	// RuleGoto goes to Target.
	RuleGoto
)

// Rule is one rule of a chain.
type Rule struct {
	Kind    RuleKind
	Target  string
	Targets []string
	Set     string
	Timeout time.Duration
	IP      netip.Addr
	Proto   uint8
	Port    uint16
}

// Build computes the model for all services and slices as seen from node
// (the node's name, for the Local traffic policies).
func Build(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, node string) Model {
	byService := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := s.Namespace + "/" + name
		byService[k] = append(byService[k], s)
	}
	m := Model{}
	for _, svc := range services {
		k := svc.Namespace + "/" + svc.Name
		if s := BuildService(svc, byService[k], node); s != nil {
			m[k] = s
		}
	}
	return m
}

// endpoint is one backend of one service port.
type endpoint struct {
	ip                        netip.Addr
	port                      uint16
	local                     bool
	ready, serving, terminate bool
}

// BuildService computes one Service's part of the model from its
// EndpointSlices; nil when the Service programs nothing (ExternalName,
// headless, no IPv4 address).
func BuildService(svc *corev1.Service, svcSlices []*discoveryv1.EndpointSlice, node string) *Service {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var clusterIPs []netip.Addr
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			clusterIPs = append(clusterIPs, a)
		}
	}
	if len(clusterIPs) == 0 {
		return nil // headless or IPv6 only
	}
	var externalIPs []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			externalIPs = append(externalIPs, a)
		}
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil && a.Is4() {
				externalIPs = append(externalIPs, a)
			}
		}
	}
	affinity := time.Duration(0)
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = 3 * time.Hour // upstream's default
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	externalLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
		(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer)

	out := &Service{Chains: map[string][]Rule{}, AffinitySets: map[string]time.Duration{},
		IPs: map[IPPort]Verdict{}, NodePorts: map[NodePort]Verdict{}}
	for _, sp := range svc.Spec.Ports {
		proto, ok := protoNumber(sp.Protocol)
		if !ok {
			continue
		}
		key := svc.Namespace + "/" + svc.Name + "/" + string(sp.Protocol) + "/" + sp.Name
		all := endpointsFor(sp, svcSlices, node)
		clusterEps := pick(all, internalLocal)
		externalEps := clusterEps
		if externalLocal {
			externalEps = pick(all, true)
		}
		// Chain names are content-addressed: the service port, and what
		// decides the chain's rules, so a chain with a given name always
		// has the same rules and a restart keeps what the table has.
		epChain := func(e endpoint) string {
			return chainName("ep", fmt.Sprintf("%s/%s/%v", key, netip.AddrPortFrom(e.ip, e.port), affinity))
		}
		named := func(prefix string, rules []Rule) string {
			return chainName(prefix, fmt.Sprintf("%s/%v", key, rules))
		}
		var svcChain string
		affSet := func(e endpoint) string {
			return chainName("aff", key+"/"+netip.AddrPortFrom(e.ip, e.port).String())
		}
		// endpoint chains for every endpoint either set uses
		for _, e := range append(slices.Clone(clusterEps), externalEps...) {
			name := epChain(e)
			if _, done := out.Chains[name]; done {
				continue
			}
			var rules []Rule
			if affinity > 0 {
				set := affSet(e)
				out.AffinitySets[set] = affinity
				rules = append(rules, Rule{Kind: RuleAffinityUpdate, Set: set, Timeout: affinity})
			}
			rules = append(rules,
				Rule{Kind: RuleHairpin, IP: e.ip},
				Rule{Kind: RuleDNAT, IP: e.ip, Proto: proto, Port: e.port})
			out.Chains[name] = rules
		}
		balance := func(eps []endpoint) []Rule {
			var rules []Rule
			targets := make([]string, 0, len(eps))
			for _, e := range eps {
				if affinity > 0 {
					rules = append(rules, Rule{Kind: RuleAffinityCheck, Set: affSet(e), Target: epChain(e)})
				}
				targets = append(targets, epChain(e))
			}
			return append(rules, Rule{Kind: RuleBalance, Targets: targets})
		}
		noEndpoints := Verdict{Kind: Reject}
		clusterVerdict := noEndpoints
		if len(clusterEps) > 0 {
			rules := balance(clusterEps)
			svcChain = named("svc", rules)
			out.Chains[svcChain] = rules
			clusterVerdict = Verdict{Kind: Goto, Chain: svcChain}
		}
		for _, ip := range clusterIPs {
			out.IPs[IPPort{IP: ip, Proto: proto, Port: uint16(sp.Port)}] = clusterVerdict
		}
		if len(externalIPs) == 0 && sp.NodePort == 0 {
			continue
		}
		// External traffic: with policy Cluster it is masqueraded and
		// balanced like internal traffic; with Local it keeps its source
		// and goes to this node's endpoints only (dropped when there are
		// none here but some elsewhere).
		extVerdict := noEndpoints
		switch {
		case !externalLocal && len(clusterEps) > 0:
			rules := []Rule{{Kind: RuleMasq}, {Kind: RuleGoto, Target: svcChain}}
			extChain := named("ext", rules)
			out.Chains[extChain] = rules
			extVerdict = Verdict{Kind: Goto, Chain: extChain}
		case externalLocal && len(externalEps) > 0:
			rules := balance(externalEps)
			extChain := named("ext", rules)
			out.Chains[extChain] = rules
			extVerdict = Verdict{Kind: Goto, Chain: extChain}
		case externalLocal && len(all) > 0:
			extVerdict = Verdict{Kind: Drop}
		}
		for _, ip := range externalIPs {
			out.IPs[IPPort{IP: ip, Proto: proto, Port: uint16(sp.Port)}] = extVerdict
		}
		if sp.NodePort != 0 {
			out.NodePorts[NodePort{Proto: proto, Port: uint16(sp.NodePort)}] = extVerdict
		}
	}
	return out
}

// endpointsFor lists the IPv4 endpoints of one service port across the
// service's slices, once each, in a stable order.
func endpointsFor(sp corev1.ServicePort, svcSlices []*discoveryv1.EndpointSlice, node string) []endpoint {
	seen := map[netip.AddrPort]int{}
	var eps []endpoint
	for _, s := range svcSlices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port int32
		found := false
		for _, p := range s.Ports {
			name, proto := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			if name == sp.Name && proto == sp.Protocol && p.Port != nil {
				port, found = *p.Port, true
				break
			}
		}
		if !found {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			ip, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !ip.Is4() {
				continue
			}
			ep := endpoint{
				ip: ip, port: uint16(port),
				local:     e.NodeName != nil && *e.NodeName == node,
				ready:     e.Conditions.Ready == nil || *e.Conditions.Ready,
				terminate: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
			}
			ep.serving = ep.ready
			if e.Conditions.Serving != nil {
				ep.serving = *e.Conditions.Serving
			}
			ap := netip.AddrPortFrom(ip, ep.port)
			if i, dup := seen[ap]; dup {
				// the same endpoint in two slices (a move between
				// slices): the readier copy wins
				if ep.ready && !eps[i].ready {
					eps[i] = ep
				}
				continue
			}
			seen[ap] = len(eps)
			eps = append(eps, ep)
		}
	}
	slices.SortFunc(eps, func(a, b endpoint) int {
		return netip.AddrPortFrom(a.ip, a.port).Compare(netip.AddrPortFrom(b.ip, b.port))
	})
	return eps
}

// pick chooses the endpoints traffic goes to: the ready ones (only local
// ones when localOnly), or, when none is ready, the serving terminating
// ones, so that a rollout's last pods still answer.
func pick(all []endpoint, localOnly bool) []endpoint {
	var ready, terminating []endpoint
	for _, e := range all {
		if localOnly && !e.local {
			continue
		}
		switch {
		case e.ready && !e.terminate:
			ready = append(ready, e)
		case e.serving && e.terminate:
			terminating = append(terminating, e)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

func protoNumber(p corev1.Protocol) (uint8, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return unix.IPPROTO_TCP, true
	case corev1.ProtocolUDP:
		return unix.IPPROTO_UDP, true
	case corev1.ProtocolSCTP:
		return unix.IPPROTO_SCTP, true
	}
	return 0, false
}

// chainName is prefix-HASH, a stable name for a chain or set of key
// within nftables' name length.
func chainName(prefix, key string) string {
	h := sha256.Sum256([]byte(key))
	return prefix + "-" + base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:10])
}
