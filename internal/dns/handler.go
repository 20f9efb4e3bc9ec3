package dns

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// ServeDNS answers one query: from the cluster's objects inside the
// cluster domain, from the upstream resolvers outside it.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	resp := s.answer(r, w.RemoteAddr().Network())
	if resp == nil {
		return
	}
	_ = w.WriteMsg(resp)
}

// answer builds the reply to r, received over network ("udp" or "tcp").
func (s *Server) answer(r *dns.Msg, network string) *dns.Msg {
	if r.Response {
		return nil // never answer an answer
	}
	m := new(dns.Msg)
	if r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeNotImplemented)
		if len(r.Question) != 1 {
			m.SetRcode(r, dns.RcodeFormatError)
		}
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(dns.CanonicalName(q.Name))
	if !dns.IsSubDomain(s.zone, name) || q.Qclass != dns.ClassINET {
		return s.forward(r, network)
	}
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	rrs, found := s.lookup(name, q.Qtype)
	switch {
	case !found:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa()}
	case len(rrs) == 0:
		m.Ns = []dns.RR{s.soa()}
	default:
		m.Answer = rrs
		m.Extra = s.additional(rrs)
	}
	size := dns.MaxMsgSize
	if network == "udp" {
		size = dns.MinMsgSize
	}
	if opt := r.IsEdns0(); opt != nil {
		if network == "udp" {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		m.SetEdns0(uint16(min(size, dns.MaxMsgSize)), false)
	}
	m.Truncate(size)
	return m
}

func (s *Server) soa() dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.cfg.TTL},
		Ns: "ns.dns." + s.zone, Mbox: "hostmaster." + s.zone, Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: s.cfg.TTL}
}

// lookup finds the records of name of type qtype; found is false when the
// name does not exist (NXDOMAIN), true with no records when it exists
// without records of that type.
func (s *Server) lookup(name string, qtype uint16) (rrs []dns.RR, found bool) {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, s.zone), ".")
	if rel == "" {
		return nil, true // the zone apex
	}
	l := strings.Split(rel, ".")
	n := len(l)
	switch {
	case l[n-1] == "svc":
		return s.lookupService(name, l[:n-1], qtype)
	case l[n-1] == "pod" && n == 1, l[n-1] == "pod" && n == 2:
		return nil, true
	case l[n-1] == "pod" && n == 3:
		return s.lookupPod(name, l[1], l[0], qtype)
	}
	return nil, false
}

// lookupService answers <svc>.<ns>.svc, <host>.<svc>.<ns>.svc and
// _<port>._<proto>.<svc>.<ns>.svc (l without "svc").
func (s *Server) lookupService(name string, l []string, qtype uint16) ([]dns.RR, bool) {
	n := len(l)
	if n <= 1 {
		return nil, true // svc.<domain> and <ns>.svc.<domain>
	}
	ns, svcName := l[n-1], l[n-2]
	svc, err := s.services.Services(ns).Get(svcName)
	if err != nil {
		return nil, false
	}
	switch n {
	case 2:
		return s.serviceRecords(name, svc, qtype), true
	case 3:
		return s.endpointRecords(name, svc, l[0], qtype)
	case 4:
		if !strings.HasPrefix(l[0], "_") || !strings.HasPrefix(l[1], "_") {
			return nil, false
		}
		return s.portRecords(name, svc, l[0][1:], l[1][1:], qtype)
	}
	return nil, false
}

func (s *Server) hdr(name string, typ uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: typ, Class: dns.ClassINET, Ttl: s.cfg.TTL}
}

// addrRecord is an A or AAAA record of ip when it answers qtype.
func (s *Server) addrRecord(name, ip string, qtype uint16) dns.RR {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil
	}
	a = a.Unmap()
	switch {
	case a.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		return &dns.A{Hdr: s.hdr(name, dns.TypeA), A: a.AsSlice()}
	case a.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		return &dns.AAAA{Hdr: s.hdr(name, dns.TypeAAAA), AAAA: a.AsSlice()}
	}
	return nil
}

func isHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// serviceRecords are the records of <svc>.<ns>.svc.<domain>.
func (s *Server) serviceRecords(name string, svc *corev1.Service, qtype uint16) []dns.RR {
	var out []dns.RR
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		if svc.Spec.ExternalName == "" {
			return nil
		}
		return []dns.RR{&dns.CNAME{Hdr: s.hdr(name, dns.TypeCNAME), Target: dns.Fqdn(svc.Spec.ExternalName)}}
	}
	if qtype == dns.TypeSRV {
		for _, p := range svc.Spec.Ports {
			if p.Name == "" {
				continue
			}
			if isHeadless(svc) {
				out = append(out, s.endpointSRV(name, svc, p.Name, string(p.Protocol))...)
				continue
			}
			out = append(out, &dns.SRV{Hdr: s.hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: name})
		}
		return out
	}
	if isHeadless(svc) {
		for _, ep := range s.endpoints(svc) {
			for _, ip := range ep.Addresses {
				if rr := s.addrRecord(name, ip, qtype); rr != nil {
					out = append(out, rr)
				}
			}
		}
		return out
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if rr := s.addrRecord(name, ip, qtype); rr != nil {
			out = append(out, rr)
		}
	}
	return out
}

// endpointRecords answers <host>.<svc>.<ns>.svc.<domain>: an endpoint
// with that hostname, or whose address dashed is host.
func (s *Server) endpointRecords(name string, svc *corev1.Service, host string, qtype uint16) ([]dns.RR, bool) {
	var out []dns.RR
	found := false
	for _, ep := range s.endpoints(svc) {
		for _, ip := range ep.Addresses {
			if endpointHost(ep, ip) != host {
				continue
			}
			found = true
			if rr := s.addrRecord(name, ip, qtype); rr != nil {
				out = append(out, rr)
			}
		}
	}
	return out, found
}

func endpointHost(ep discoveryv1.Endpoint, ip string) string {
	if ep.Hostname != nil && *ep.Hostname != "" {
		return *ep.Hostname
	}
	return dashed(ip)
}

func dashed(ip string) string {
	return strings.NewReplacer(".", "-", ":", "-").Replace(ip)
}

// portRecords answers _<port>._<proto>.<svc>.<ns>.svc.<domain>.
func (s *Server) portRecords(name string, svc *corev1.Service, port, proto string, qtype uint16) ([]dns.RR, bool) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, false
	}
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == port && strings.EqualFold(string(p.Protocol), proto) {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return nil, false
	}
	if qtype != dns.TypeSRV && qtype != dns.TypeANY {
		return nil, true
	}
	if isHeadless(svc) {
		out := s.endpointSRV(name, svc, sp.Name, string(sp.Protocol))
		return out, true
	}
	target := svc.Name + "." + svc.Namespace + ".svc." + s.zone
	return []dns.RR{&dns.SRV{Hdr: s.hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(sp.Port), Target: target}}, true
}

// endpointSRV is one SRV record per ready endpoint of a headless service's
// named port.
func (s *Server) endpointSRV(name string, svc *corev1.Service, port, proto string) []dns.RR {
	var out []dns.RR
	for _, sl := range s.slicesOf(svc) {
		var portNum int32
		found := false
		for _, p := range sl.Ports {
			if p.Name != nil && *p.Name == port && p.Port != nil && (p.Protocol == nil || string(*p.Protocol) == proto) {
				portNum, found = *p.Port, true
			}
		}
		if !found {
			continue
		}
		for _, ep := range readyEndpoints(sl, svc) {
			for _, ip := range ep.Addresses {
				target := endpointHost(ep, ip) + "." + svc.Name + "." + svc.Namespace + ".svc." + s.zone
				out = append(out, &dns.SRV{Hdr: s.hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(portNum), Target: target})
			}
		}
	}
	return out
}

// slicesOf are the EndpointSlices of svc.
func (s *Server) slicesOf(svc *corev1.Service) []*discoveryv1.EndpointSlice {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	sl, _ := s.slices.EndpointSlices(svc.Namespace).List(sel)
	return sl
}

// endpoints are the ready endpoints of svc (all of them when it
// publishes not-ready addresses), each address once.
func (s *Server) endpoints(svc *corev1.Service) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	seen := map[string]bool{}
	for _, sl := range s.slicesOf(svc) {
		for _, ep := range readyEndpoints(sl, svc) {
			var addrs []string
			for _, ip := range ep.Addresses {
				if !seen[ip] {
					seen[ip] = true
					addrs = append(addrs, ip)
				}
			}
			if len(addrs) > 0 {
				ep.Addresses = addrs
				out = append(out, ep)
			}
		}
	}
	return out
}

func readyEndpoints(sl *discoveryv1.EndpointSlice, svc *corev1.Service) []discoveryv1.Endpoint {
	if sl.AddressType == discoveryv1.AddressTypeFQDN {
		return nil
	}
	var out []discoveryv1.Endpoint
	for _, ep := range sl.Endpoints {
		if svc.Spec.PublishNotReadyAddresses || ep.Conditions.Ready == nil || *ep.Conditions.Ready {
			out = append(out, ep)
		}
	}
	return out
}

// lookupPod answers <a-b-c-d>.<ns>.pod.<domain> when a pod in ns has that
// IP.
func (s *Server) lookupPod(name, ns, host string, qtype uint16) ([]dns.RR, bool) {
	ip := strings.ReplaceAll(host, "-", ".")
	if strings.Count(host, "-") != 3 {
		ip = strings.ReplaceAll(host, "-", ":")
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, false
	}
	objs, _ := s.pods.ByIndex(podIPIndex, ns+"/"+a.String())
	if len(objs) == 0 {
		return nil, false
	}
	if rr := s.addrRecord(name, a.String(), qtype); rr != nil {
		return []dns.RR{rr}, true
	}
	return nil, true
}

// additional are the address records of SRV targets in the cluster.
func (s *Server) additional(rrs []dns.RR) []dns.RR {
	var out []dns.RR
	seen := map[string]bool{}
	for _, rr := range rrs {
		srv, ok := rr.(*dns.SRV)
		if !ok || seen[srv.Target] {
			continue
		}
		seen[srv.Target] = true
		extra, _ := s.lookup(srv.Target, dns.TypeA)
		out = append(out, extra...)
	}
	return out
}

// forward relays r to the upstream resolvers over the same network and
// returns the first answer; SERVFAIL when none answers.
func (s *Server) forward(r *dns.Msg, network string) *dns.Msg {
	c := &dns.Client{Net: network, Timeout: s.cfg.ForwardTimeout}
	if network == "udp" {
		c.UDPSize = dns.MaxMsgSize
	}
	for _, up := range s.upstreams {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout)
		resp, _, err := c.ExchangeContext(ctx, r, up)
		cancel()
		if err != nil {
			s.log.Debug("upstream did not answer", "upstream", up, "err", err)
			continue
		}
		resp.Id = r.Id
		if network == "udp" {
			size := dns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = max(int(opt.UDPSize()), dns.MinMsgSize)
			}
			resp.Truncate(size)
		}
		return resp
	}
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	return m
}
