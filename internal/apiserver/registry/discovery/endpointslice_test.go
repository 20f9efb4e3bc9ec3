package discovery

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
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

func newSlice() *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default"},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(80))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}, NodeName: ptr("node1")}},
	}
}

func TestEndpointSlice(t *testing.T) {
	r := Resources()[0]
	if r.Plural != "endpointslices" || r.Singular != "endpointslice" || !r.Namespaced || r.GVK.Group != "discovery.k8s.io" {
		t.Errorf("resource %+v", r)
	}
	s := r.Strategy
	es := newSlice()
	es.Ports = append(es.Ports, discoveryv1.EndpointPort{Port: ptr(int32(443))})
	s.Default(es)
	if *es.Ports[0].Protocol != corev1.ProtocolTCP || es.Ports[1].Name == nil || *es.Ports[1].Name != "" {
		t.Errorf("defaults %+v", es.Ports)
	}
	tests := []struct {
		name   string
		modify func(*discoveryv1.EndpointSlice)
		want   []wantErr
	}{
		{"valid", func(*discoveryv1.EndpointSlice) {}, nil},
		{"no address type", func(e *discoveryv1.EndpointSlice) { e.AddressType = "" }, []wantErr{{field.ErrorTypeRequired, "addressType"}}},
		{"bad address type", func(e *discoveryv1.EndpointSlice) { e.AddressType = "IPv5" }, []wantErr{{field.ErrorTypeNotSupported, "addressType"}}},
		{"no addresses", func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = nil },
			[]wantErr{{field.ErrorTypeRequired, "endpoints[0].addresses"}}},
		{"bad ip", func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"10.1.0.500"} },
			[]wantErr{{field.ErrorTypeInvalid, "endpoints[0].addresses[0]"}}},
		{"ipv6 in ipv4 slice", func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"fd00::1"} },
			[]wantErr{{field.ErrorTypeInvalid, "endpoints[0].addresses"}}},
		{"loopback", func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Addresses = []string{"127.0.0.1"} },
			[]wantErr{{field.ErrorTypeInvalid, "endpoints[0].addresses[0]"}}},
		{"fqdn", func(e *discoveryv1.EndpointSlice) {
			e.AddressType = discoveryv1.AddressTypeFQDN
			e.Endpoints[0].Addresses = []string{"db.example.com"}
		}, nil},
		{"duplicate port", func(e *discoveryv1.EndpointSlice) {
			e.Ports = append(e.Ports, discoveryv1.EndpointPort{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP)})
		}, []wantErr{{field.ErrorTypeDuplicate, "ports[1].name"}}},
		{"bad protocol", func(e *discoveryv1.EndpointSlice) { e.Ports[0].Protocol = ptr(corev1.Protocol("ICMP")) },
			[]wantErr{{field.ErrorTypeNotSupported, "ports[0].protocol"}}},
		{"bad hostname", func(e *discoveryv1.EndpointSlice) { e.Endpoints[0].Hostname = ptr("Web_1") },
			[]wantErr{{field.ErrorTypeInvalid, "endpoints[0].hostname"}}},
	}
	for _, tt := range tests {
		e := newSlice()
		s.Default(e)
		tt.modify(e)
		if got := errsOf(s.ValidateCreate(e)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, s.ValidateCreate(e), tt.want)
		}
	}
	old := newSlice()
	s.Default(old)
	cur := old.DeepCopy()
	cur.AddressType = discoveryv1.AddressTypeIPv6
	got := errsOf(s.ValidateUpdate(cur, old))
	if len(got) == 0 || got[len(got)-1] != (wantErr{field.ErrorTypeInvalid, "addressType"}) {
		t.Errorf("address type change: %v", got)
	}
	// Unchanged invalid endpoints are tolerated on update.
	old.Endpoints[0].Addresses = []string{"127.0.0.1"}
	cur = old.DeepCopy()
	cur.Labels = map[string]string{"a": "b"}
	if errs := s.ValidateUpdate(cur, old); len(errs) != 0 {
		t.Errorf("unchanged endpoints: %v", errs)
	}
}

func TestEndpointSliceRow(t *testing.T) {
	s := Resources()[0].Strategy
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	es := newSlice()
	es.CreationTimestamp = metav1.NewTime(now.Add(-5 * time.Minute))
	es.Endpoints = append(es.Endpoints,
		discoveryv1.Endpoint{Addresses: []string{"10.1.0.6", "10.1.0.7"}},
		discoveryv1.Endpoint{Addresses: []string{"10.1.0.8"}})
	want := []interface{}{"web-abc", "IPv4", "80", "10.1.0.5,10.1.0.6,10.1.0.7 + 1 more...", "5m"}
	if got := s.Row(es, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	empty := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv6}
	if got := s.Row(empty, now); !reflect.DeepEqual(got, []interface{}{"", "IPv6", "<unset>", "<unset>", "<unknown>"}) {
		t.Errorf("empty row %#v", got)
	}
	var names []string
	for _, c := range s.Columns() {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"Name", "AddressType", "Ports", "Endpoints", "Age"}) {
		t.Errorf("columns %v", names)
	}
}
