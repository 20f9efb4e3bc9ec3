package proxy

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func service(name, clusterIP string, typ corev1.ServiceType, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: typ, ClusterIP: clusterIP, ClusterIPs: []string{clusterIP}, Ports: ports},
	}
}

func port(name string, p, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: p, NodePort: nodePort, TargetPort: intstr.FromInt32(8080)}
}

func ep(ip, node string, ready, terminating bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, NodeName: ptr.To(node),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready || terminating), Terminating: ptr.To(terminating)}}
}

func slice(svc, portName string, p int32, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(p)}},
		Endpoints:   eps,
	}
}

// backends follows a dispatch verdict to the endpoints a new connection
// can reach (the DNAT targets), and says whether the path masquerades.
func backends(s *Service, v Verdict) (ips []string, masq bool) {
	var walk func(chain string)
	walk = func(chain string) {
		for _, r := range s.Chains[chain] {
			switch r.Kind {
			case RuleMasq:
				masq = true
			case RuleGoto:
				walk(r.Target)
			case RuleBalance:
				for _, t := range r.Targets {
					walk(t)
				}
			case RuleDNAT:
				ips = append(ips, netip.AddrPortFrom(r.IP, r.Port).String())
			}
		}
	}
	if v.Kind == Goto {
		walk(v.Chain)
	}
	return ips, masq
}

func TestBuild(t *testing.T) {
	cip := netip.MustParseAddr("10.43.0.10")
	lb := netip.MustParseAddr("192.168.50.1")
	tcp := uint8(6)
	type want struct {
		ip       IPPort
		nodePort bool
		kind     VerdictKind
		backends []string
		masq     bool
	}
	cases := []struct {
		name   string
		svc    func(*corev1.Service)
		typ    corev1.ServiceType
		eps    []discoveryv1.Endpoint
		nil    bool
		checks []want
	}{
		{name: "ready endpoints only", eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", true, false), ep("10.42.1.5", "n2", true, false), ep("10.42.1.6", "n2", false, false)},
			checks: []want{{ip: IPPort{cip, tcp, 80}, kind: Goto, backends: []string{"10.42.0.5:8080", "10.42.1.5:8080"}}}},
		{name: "no endpoints rejects", checks: []want{{ip: IPPort{cip, tcp, 80}, kind: Reject}}},
		{name: "terminating used when none ready", eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", false, true), ep("10.42.0.6", "n1", false, false)},
			checks: []want{{ip: IPPort{cip, tcp, 80}, kind: Goto, backends: []string{"10.42.0.5:8080"}}}},
		{name: "terminating ignored when one is ready", eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", false, true), ep("10.42.0.7", "n2", true, false)},
			checks: []want{{ip: IPPort{cip, tcp, 80}, kind: Goto, backends: []string{"10.42.0.7:8080"}}}},
		{name: "internalTrafficPolicy Local", svc: func(s *corev1.Service) {
			s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
		}, eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", true, false), ep("10.42.1.5", "n2", true, false)},
			checks: []want{{ip: IPPort{cip, tcp, 80}, kind: Goto, backends: []string{"10.42.0.5:8080"}}}},
		{name: "nodeport cluster policy masquerades", typ: corev1.ServiceTypeNodePort,
			eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", true, false), ep("10.42.1.5", "n2", true, false)},
			checks: []want{
				{ip: IPPort{cip, tcp, 80}, kind: Goto, backends: []string{"10.42.0.5:8080", "10.42.1.5:8080"}},
				{nodePort: true, kind: Goto, masq: true, backends: []string{"10.42.0.5:8080", "10.42.1.5:8080"}},
			}},
		{name: "nodeport local policy keeps source, local endpoints", typ: corev1.ServiceTypeNodePort, svc: func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", true, false), ep("10.42.1.5", "n2", true, false)},
			checks: []want{
				{ip: IPPort{cip, tcp, 80}, kind: Goto, backends: []string{"10.42.0.5:8080", "10.42.1.5:8080"}},
				{nodePort: true, kind: Goto, backends: []string{"10.42.0.5:8080"}},
			}},
		{name: "nodeport local policy without local endpoints drops", typ: corev1.ServiceTypeNodePort, svc: func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, eps: []discoveryv1.Endpoint{ep("10.42.1.5", "n2", true, false)},
			checks: []want{{nodePort: true, kind: Drop}}},
		{name: "nodeport without endpoints rejects", typ: corev1.ServiceTypeNodePort, checks: []want{{nodePort: true, kind: Reject}}},
		{name: "loadbalancer ingress IP", typ: corev1.ServiceTypeLoadBalancer, svc: func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.50.1"}}
		}, eps: []discoveryv1.Endpoint{ep("10.42.0.5", "n1", true, false)},
			checks: []want{{ip: IPPort{lb, tcp, 80}, kind: Goto, masq: true, backends: []string{"10.42.0.5:8080"}}}},
		{name: "headless programs nothing", svc: func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }, nil: true},
		{name: "externalname programs nothing", typ: corev1.ServiceTypeExternalName, nil: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ := tc.typ
			if typ == "" {
				typ = corev1.ServiceTypeClusterIP
			}
			np := int32(0)
			if typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer {
				np = 30080
			}
			svc := service("web", "10.43.0.10", typ, port("http", 80, np))
			if tc.svc != nil {
				tc.svc(svc)
			}
			m := Build([]*corev1.Service{svc}, []*discoveryv1.EndpointSlice{slice("web", "http", 8080, tc.eps...), slice("unrelated", "http", 8080, ep("10.42.9.9", "n1", true, false))}, "n1")
			s := m["default/web"]
			if tc.nil {
				if s != nil {
					t.Fatalf("want nothing programmed, got %+v", s)
				}
				return
			}
			if s == nil {
				t.Fatal("nothing programmed")
			}
			for _, w := range tc.checks {
				var v Verdict
				var ok bool
				if w.nodePort {
					v, ok = s.NodePorts[NodePort{tcp, 30080}]
				} else {
					v, ok = s.IPs[w.ip]
				}
				if !ok {
					t.Fatalf("%+v not dispatched: %+v", w, s)
				}
				if v.Kind != w.kind {
					t.Fatalf("%+v: verdict %v, want %v", w, v.Kind, w.kind)
				}
				got, masq := backends(s, v)
				slices.Sort(got)
				if !slices.Equal(got, w.backends) || masq != w.masq {
					t.Errorf("%+v: backends %v masq %v", w, got, masq)
				}
			}
		})
	}
}

func TestBuildAffinity(t *testing.T) {
	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	svc.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	s := BuildService(svc, []*discoveryv1.EndpointSlice{slice("web", "http", 8080, ep("10.42.0.5", "n1", true, false), ep("10.42.0.6", "n1", true, false))}, "n1")
	if len(s.AffinitySets) != 2 {
		t.Fatalf("affinity sets %v, want one per endpoint", s.AffinitySets)
	}
	svcChain := s.IPs[IPPort{netip.MustParseAddr("10.43.0.10"), 6, 80}].Chain
	rules := s.Chains[svcChain]
	if len(rules) != 3 || rules[0].Kind != RuleAffinityCheck || rules[1].Kind != RuleAffinityCheck || rules[2].Kind != RuleBalance {
		t.Fatalf("service chain %+v: want two affinity checks then the balance", rules)
	}
	for _, r := range rules[:2] {
		if first := s.Chains[r.Target][0]; first.Kind != RuleAffinityUpdate || first.Set != r.Set || first.Timeout != time.Minute {
			t.Errorf("endpoint chain %s starts with %+v, want an update of %s for 60s", r.Target, first, r.Set)
		}
	}
}

func TestBuildServiceStable(t *testing.T) {
	// the same input gives the same chains, whatever the slice order: the
	// applier relies on it to rewrite only what changed
	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	a := slice("web", "http", 8080, ep("10.42.0.5", "n1", true, false))
	b := slice("web", "http", 8080, ep("10.42.0.6", "n1", true, false))
	x, y := BuildService(svc, []*discoveryv1.EndpointSlice{a, b}, "n1"), BuildService(svc, []*discoveryv1.EndpointSlice{b, a}, "n1")
	for name, rules := range x.Chains {
		if !rulesEqual(rules, y.Chains[name]) {
			t.Errorf("chain %s differs with slice order: %+v vs %+v", name, rules, y.Chains[name])
		}
	}
}
