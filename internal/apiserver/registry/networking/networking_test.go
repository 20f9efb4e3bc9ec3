package networking

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

func ptr[T any](v T) *T { return &v }

type wantErr struct {
	typ   field.ErrorType
	field string
}

func errsOf(errs field.ErrorList) []wantErr {
	var out []wantErr
	for _, e := range errs {
		out = append(out, wantErr{e.Type, e.Field})
	}
	return out
}

func res(t *testing.T, plural string) *registry.Resource {
	for _, r := range Resources() {
		if r.Plural == plural {
			return r
		}
	}
	t.Fatalf("no %s", plural)
	return nil
}

func TestResources(t *testing.T) {
	for _, tt := range []struct {
		plural, singular string
		short            []string
		namespaced       bool
	}{
		{"ingresses", "ingress", []string{"ing"}, true},
		{"ingressclasses", "ingressclass", nil, false},
		{"networkpolicies", "networkpolicy", []string{"netpol"}, true},
	} {
		r := res(t, tt.plural)
		if r.Singular != tt.singular || !reflect.DeepEqual(r.ShortNames, tt.short) || r.Namespaced != tt.namespaced || len(r.Categories) != 0 {
			t.Errorf("%s: %+v", tt.plural, r)
		}
		if len(r.Strategy.Columns()) != len(r.Strategy.Row(r.New(), time.Now())) {
			t.Errorf("%s: columns and cells differ", tt.plural)
		}
	}
}

func newIngress() *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{
			Host: "web.example.com",
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: ptr(networkingv1.PathTypePrefix),
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}}},
		}}},
	}
}

func TestIngressValidate(t *testing.T) {
	s := res(t, "ingresses").Strategy
	path0 := func(i *networkingv1.Ingress) *networkingv1.HTTPIngressPath {
		return &i.Spec.Rules[0].HTTP.Paths[0]
	}
	tests := []struct {
		name   string
		modify func(*networkingv1.Ingress)
		want   []wantErr
	}{
		{"valid", func(*networkingv1.Ingress) {}, nil},
		{"no rules or backend", func(i *networkingv1.Ingress) { i.Spec.Rules = nil }, []wantErr{{field.ErrorTypeInvalid, "spec"}}},
		{"no path type", func(i *networkingv1.Ingress) { path0(i).PathType = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.rules[0].http.paths[0].pathType"}}},
		{"bad path type", func(i *networkingv1.Ingress) { path0(i).PathType = ptr(networkingv1.PathType("Regex")) },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.rules[0].http.paths[0].pathType"}}},
		{"relative path", func(i *networkingv1.Ingress) { path0(i).Path = "api" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.rules[0].http.paths[0].path"}}},
		{"dot segment", func(i *networkingv1.Ingress) { path0(i).Path = "/a/../b" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.rules[0].http.paths[0].path"}}},
		{"ip host", func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = "10.0.0.1" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.rules[0].host"}}},
		{"wildcard host", func(i *networkingv1.Ingress) { i.Spec.Rules[0].Host = "*.example.com" }, nil},
		{"no paths", func(i *networkingv1.Ingress) { i.Spec.Rules[0].HTTP.Paths = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.rules[0].http.paths"}}},
		{"no port", func(i *networkingv1.Ingress) { path0(i).Backend.Service.Port.Number = 0 },
			[]wantErr{{field.ErrorTypeRequired, "spec.rules[0].http.paths[0].backend"}}},
		{"no backend", func(i *networkingv1.Ingress) { path0(i).Backend.Service = nil },
			[]wantErr{{field.ErrorTypeInvalid, "spec.rules[0].http.paths[0].backend"}}},
		{"class mismatch", func(i *networkingv1.Ingress) {
			i.Spec.IngressClassName = ptr("nginx")
			i.Annotations = map[string]string{"kubernetes.io/ingress.class": "traefik"}
		}, []wantErr{{field.ErrorTypeInvalid, "annotations.kubernetes.io/ingress.class"}}},
		{"bad tls secret", func(i *networkingv1.Ingress) {
			i.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"web.example.com"}, SecretName: "Bad_Secret"}}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.tls[0].secretName"}}},
	}
	for _, tt := range tests {
		i := newIngress()
		tt.modify(i)
		if got := errsOf(s.ValidateCreate(i)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, s.ValidateCreate(i), tt.want)
		}
	}
	// An existing invalid secret name may stay on update.
	old := newIngress()
	old.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "Bad_Secret"}}
	if errs := s.ValidateUpdate(old.DeepCopy(), old); len(errs) != 0 {
		t.Errorf("update with an old invalid secret: %v", errs)
	}
	st := newIngress()
	st.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "not-an-ip"}, {Hostname: "10.0.0.1"}}
	if got := errsOf(s.ValidateStatusUpdate(st, newIngress())); len(got) != 2 {
		t.Errorf("status errors %v", got)
	}
}

func TestIngressRow(t *testing.T) {
	s := res(t, "ingresses").Strategy
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	i := newIngress()
	i.CreationTimestamp = metav1.NewTime(now.Add(-time.Hour))
	if got, want := s.Row(i, now), []interface{}{"web", "<none>", "web.example.com", "", "80", "60m"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	i.Spec.IngressClassName = ptr("nginx")
	i.Spec.TLS = []networkingv1.IngressTLS{{}}
	for _, h := range []string{"", "b.example.com", "c.example.com", "d.example.com", "e.example.com"} {
		i.Spec.Rules = append(i.Spec.Rules, networkingv1.IngressRule{Host: h})
	}
	i.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.2"}, {Hostname: "lb.example.com"}, {IP: "10.0.0.1"}, {IP: "10.0.0.2"}}
	want := []interface{}{"web", "nginx", "web.example.com,b.example.com,c.example.com + 3 more...", "10.0.0.1,10.0.0.2,lb.example.com", "80, 443", "60m"}
	if got := s.Row(i, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	if got := s.Row(&networkingv1.Ingress{}, now); got[2] != "*" {
		t.Errorf("hosts of an ingress without rules: %v", got[2])
	}
}

func TestIngressClass(t *testing.T) {
	s := res(t, "ingressclasses").Strategy
	c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{
		Controller: "k8s.io/ingress-nginx",
		Parameters: &networkingv1.IngressClassParametersReference{APIGroup: ptr("k8s.example.com"), Kind: "IngressParameters", Name: "p"},
	}}
	s.Default(c)
	if c.Spec.Parameters.Scope == nil || *c.Spec.Parameters.Scope != "Cluster" {
		t.Errorf("scope default %v", c.Spec.Parameters.Scope)
	}
	if errs := s.ValidateCreate(c); len(errs) != 0 {
		t.Errorf("valid class: %v", errs)
	}
	bad := c.DeepCopy()
	bad.Spec.Controller = "nginx"
	bad.Spec.Parameters.Scope = ptr("Namespace")
	if got := errsOf(s.ValidateCreate(bad)); !reflect.DeepEqual(got, []wantErr{{field.ErrorTypeInvalid, "spec.controller"}, {field.ErrorTypeRequired, "spec.parameters.namespace"}}) {
		t.Errorf("invalid class: %v", s.ValidateCreate(bad))
	}
	upd := c.DeepCopy()
	upd.Spec.Controller = "example.com/other"
	if got := errsOf(s.ValidateUpdate(upd, c)); !reflect.DeepEqual(got, []wantErr{{field.ErrorTypeInvalid, "spec.controller"}}) {
		t.Errorf("controller change: %v", got)
	}
	now := time.Now()
	if got := s.Row(c, now); !reflect.DeepEqual(got, []interface{}{"nginx", "k8s.io/ingress-nginx", "IngressParameters.k8s.example.com/p", "<unknown>"}) {
		t.Errorf("row %#v", got)
	}
	if got := s.Row(&networkingv1.IngressClass{}, now); got[2] != "<none>" {
		t.Errorf("parameters %v", got[2])
	}
}

func TestNetworkPolicy(t *testing.T) {
	s := res(t, "networkpolicies").Strategy
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "deny"}, Spec: networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr(intstr.FromInt32(5432))}}}},
		Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}}}}},
	}}
	s.Default(np)
	if *np.Spec.Ingress[0].Ports[0].Protocol != corev1.ProtocolTCP ||
		!reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("defaults %+v", np.Spec)
	}
	if errs := s.ValidateCreate(np); len(errs) != 0 {
		t.Errorf("valid policy: %v", errs)
	}
	tests := []struct {
		name   string
		modify func(*networkingv1.NetworkPolicy)
		want   []wantErr
	}{
		{"bad port", func(n *networkingv1.NetworkPolicy) { n.Spec.Ingress[0].Ports[0].Port = ptr(intstr.FromInt32(0)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.ingress[0].ports[0].port"}}},
		{"end port below port", func(n *networkingv1.NetworkPolicy) { n.Spec.Ingress[0].Ports[0].EndPort = ptr(int32(10)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.ingress[0].ports[0].endPort"}}},
		{"empty peer", func(n *networkingv1.NetworkPolicy) { n.Spec.Egress[0].To = []networkingv1.NetworkPolicyPeer{{}} },
			[]wantErr{{field.ErrorTypeRequired, "spec.egress[0].to[0]"}}},
		{"except outside", func(n *networkingv1.NetworkPolicy) {
			n.Spec.Egress[0].To[0].IPBlock.Except = []string{"192.168.0.0/16"}
		},
			[]wantErr{{field.ErrorTypeInvalid, "spec.egress[0].to[0].ipBlock.except[0]"}}},
		{"bad policy type", func(n *networkingv1.NetworkPolicy) { n.Spec.PolicyTypes = []networkingv1.PolicyType{"Sideways"} },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.policyTypes[0]"}}},
	}
	for _, tt := range tests {
		n := np.DeepCopy()
		tt.modify(n)
		if got := errsOf(s.ValidateCreate(n)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, s.ValidateCreate(n), tt.want)
		}
	}
	now := time.Now()
	if got := s.Row(np, now); !reflect.DeepEqual(got, []interface{}{"deny", "app=db", "<unknown>"}) {
		t.Errorf("row %#v", got)
	}
	var empty runtime.Object = &networkingv1.NetworkPolicy{}
	if got := s.Row(empty, now); got[1] != "<none>" {
		t.Errorf("empty selector cell %q", got[1])
	}
}
