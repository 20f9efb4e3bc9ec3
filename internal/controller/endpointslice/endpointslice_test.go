package endpointslice

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func svc(mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}}}}
	for _, m := range mut {
		m(s)
	}
	return s
}

func pod(name string, ips []string, ready bool, mut ...func(*corev1.Pod)) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func zones(node string) string { return map[string]string{"n1": "z1"}[node] }

// summary prints a slice as "type ports: addr(ready,serving,terminating,zone) ...".
func summary(es *discoveryv1.EndpointSlice) string {
	s := fmt.Sprintf("%s [%s]:", es.AddressType, portsKey(es.Ports))
	for _, ep := range es.Endpoints {
		c := ep.Conditions
		s += fmt.Sprintf(" %s(%v,%v,%v,%s)", ep.Addresses[0], *c.Ready, *c.Serving, *c.Terminating, deref(ep.Zone))
	}
	return s
}

func TestDesired(t *testing.T) {
	terminating := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }
	many := make([]*corev1.Pod, 0, 250)
	for i := range 250 {
		many = append(many, pod(fmt.Sprintf("p%03d", i), []string{fmt.Sprintf("10.0.%d.%d", i/200, i%200)}, true))
	}
	tests := []struct {
		name   string
		svc    *corev1.Service
		pods   []*corev1.Pod
		max    int
		want   []string
		counts []int
	}{
		{name: "conditions", svc: svc(), pods: []*corev1.Pod{
			pod("a", []string{"10.0.0.1"}, true), pod("b", []string{"10.0.0.2"}, false),
			pod("c", []string{"10.0.0.3"}, true, terminating), pod("d", nil, true),
			pod("e", []string{"10.0.0.5"}, true, func(p *corev1.Pod) { p.Spec.NodeName = "n2" }),
		}, max: 100, want: []string{"IPv4 [http/8080/TCP/,]: 10.0.0.1(true,true,false,z1) 10.0.0.2(false,false,false,z1) 10.0.0.3(false,true,true,z1) 10.0.0.5(true,true,false,)"}},
		{name: "publishNotReadyAddresses", svc: svc(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			pods: []*corev1.Pod{pod("b", []string{"10.0.0.2"}, false)}, max: 100,
			want: []string{"IPv4 [http/8080/TCP/,]: 10.0.0.2(true,false,false,z1)"}},
		{name: "no endpoints: one empty slice", svc: svc(), max: 100, want: []string{"IPv4 []:"}},
		{name: "dual stack", svc: svc(func(s *corev1.Service) {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		}), pods: []*corev1.Pod{pod("a", []string{"10.0.0.1", "fd00::1"}, true)}, max: 100,
			want: []string{"IPv6 [http/8080/TCP/,]: fd00::1(true,true,false,z1)", "IPv4 [http/8080/TCP/,]: 10.0.0.1(true,true,false,z1)"}},
		{name: "250 endpoints in slices of 100", svc: svc(), pods: many, max: 100, counts: []int{100, 100, 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Desired(tt.svc, tt.pods, zones, tt.max)
			for i, es := range got {
				if es.Labels[discoveryv1.LabelServiceName] != "web" || es.Labels[discoveryv1.LabelManagedBy] != ControllerName {
					t.Errorf("slice %d labels %v", i, es.Labels)
				}
				if ref := metav1.GetControllerOf(es); ref == nil || ref.UID != "svc-uid" || ref.Kind != "Service" {
					t.Errorf("slice %d owner %+v", i, es.OwnerReferences)
				}
			}
			if tt.counts != nil {
				var counts []int
				for _, es := range got {
					counts = append(counts, len(es.Endpoints))
				}
				if fmt.Sprint(counts) != fmt.Sprint(tt.counts) {
					t.Errorf("counts %v, want %v", counts, tt.counts)
				}
				return
			}
			var sums []string
			for _, es := range got {
				sums = append(sums, summary(es))
			}
			if fmt.Sprintf("%q", sums) != fmt.Sprintf("%q", tt.want) {
				t.Errorf("got  %q\nwant %q", sums, tt.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	named := func(name string, es *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
		es = es.DeepCopy()
		es.Name = name
		return es
	}
	one := Desired(svc(), []*corev1.Pod{pod("a", []string{"10.0.0.1"}, true)}, zones, 100)[0]
	two := Desired(svc(), []*corev1.Pod{pod("b", []string{"10.0.0.2"}, true)}, zones, 100)[0]
	v6 := Desired(svc(func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }), nil, zones, 100)[0]
	tests := []struct {
		name                     string
		existing, want           []*discoveryv1.EndpointSlice
		creates, updates, delete string
	}{
		{"nothing yet", nil, []*discoveryv1.EndpointSlice{one}, "1", "", ""},
		{"unchanged", []*discoveryv1.EndpointSlice{named("s1", one)}, []*discoveryv1.EndpointSlice{one}, "", "", ""},
		{"changed in place", []*discoveryv1.EndpointSlice{named("s1", one)}, []*discoveryv1.EndpointSlice{two}, "", "s1", ""},
		{"address type is immutable", []*discoveryv1.EndpointSlice{named("s1", v6)}, []*discoveryv1.EndpointSlice{one}, "1", "", "s1"},
		{"keep the matching one, drop the other", []*discoveryv1.EndpointSlice{named("s1", one), named("s2", two)},
			[]*discoveryv1.EndpointSlice{two}, "", "", "s1"},
		{"service gone", []*discoveryv1.EndpointSlice{named("s1", one)}, nil, "", "", "s1"},
	}
	names := func(l []*discoveryv1.EndpointSlice) string {
		s := ""
		for _, es := range l {
			if es.Name == "" {
				s += "1"
			}
			s += es.Name
		}
		return s
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, u, d := Plan(tt.existing, tt.want)
			if names(c) != tt.creates || names(u) != tt.updates || names(d) != tt.delete {
				t.Errorf("creates %q updates %q deletes %q, want %q %q %q", names(c), names(u), names(d), tt.creates, tt.updates, tt.delete)
			}
		})
	}
}
