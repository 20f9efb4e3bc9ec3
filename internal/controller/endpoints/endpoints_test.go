package endpoints

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func svc(mut ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Labels: map[string]string{"team": "a"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}}}}
	for _, m := range mut {
		m(s)
	}
	return s
}

func pod(name, ip string, ready bool, mut ...func(*corev1.Pod)) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	p.UID = types.UID("uid-" + name)
	for _, m := range mut {
		m(p)
	}
	return p
}

func addr(p *corev1.Pod) corev1.EndpointAddress {
	n := "n1"
	return corev1.EndpointAddress{IP: p.Status.PodIP, NodeName: &n,
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: p.Name, UID: p.UID}}
}

var httpPort = []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP}}

func TestDesired(t *testing.T) {
	a, b := pod("a", "10.0.0.2", true), pod("b", "10.0.0.1", false)
	noIP := pod("c", "", true)
	terminating := pod("d", "10.0.0.4", true, func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} })
	failed := pod("e", "10.0.0.5", false, func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed })
	noPort := pod("f", "10.0.0.6", true, func(p *corev1.Pod) { p.Spec.Containers[0].Ports = nil })
	host := pod("g", "10.0.0.7", true, func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "g0", "web" })
	hostAddr := addr(host)
	hostAddr.Hostname = "g0"
	tests := []struct {
		name string
		svc  *corev1.Service
		pods []*corev1.Pod
		want []corev1.EndpointSubset
	}{
		{"ready and not ready", svc(), []*corev1.Pod{a, b},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr(a)}, NotReadyAddresses: []corev1.EndpointAddress{addr(b)}, Ports: httpPort}}},
		{"no ip, terminating, failed and unresolvable port skipped", svc(), []*corev1.Pod{noIP, terminating, failed, noPort}, nil},
		{"publishNotReadyAddresses", svc(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }), []*corev1.Pod{a, b, terminating},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr(b), addr(a), addr(terminating)}, Ports: httpPort}}},
		{"numeric and default target ports", svc(func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "x", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9000)},
				{Name: "y", Port: 82, Protocol: corev1.ProtocolUDP}}
		}), []*corev1.Pod{a},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr(a)}, Ports: []corev1.EndpointPort{
				{Name: "x", Port: 9000, Protocol: corev1.ProtocolTCP}, {Name: "y", Port: 82, Protocol: corev1.ProtocolUDP}}}}},
		{"pods resolving different ports get their own subsets", svc(func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "m", Port: 90, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("metrics")})
		}), []*corev1.Pod{a, pod("h", "10.0.0.8", true, func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 9090})
		})},
			[]corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{addr(a)}, Ports: httpPort},
				{Addresses: []corev1.EndpointAddress{addr(pod("h", "10.0.0.8", true))}, Ports: []corev1.EndpointPort{httpPort[0], {Name: "m", Port: 9090, Protocol: corev1.ProtocolTCP}}},
			}},
		{"hostname when the subdomain names the service", svc(), []*corev1.Pod{host},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{hostAddr}, Ports: httpPort}}},
		{"headless without ports", svc(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.Ports = corev1.ClusterIPNone, nil }), []*corev1.Pod{a},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr(a)}}}},
		{"no ports, not headless", svc(func(s *corev1.Service) { s.Spec.Ports = nil }), []*corev1.Pod{a}, nil},
		{"ipv6 service takes the pods' v6 address", svc(func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
			[]*corev1.Pod{pod("v", "10.0.0.9", true, func(p *corev1.Pod) { p.Status.PodIPs = []corev1.PodIP{{IP: "10.0.0.9"}, {IP: "fd00::9"}} })},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{func() corev1.EndpointAddress {
				a := addr(pod("v", "fd00::9", true))
				return a
			}()}, Ports: httpPort}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Desired(tt.svc, tt.pods)
			if !equality.Semantic.DeepEqual(got.Subsets, tt.want) {
				t.Errorf("subsets:\n got %+v\nwant %+v", got.Subsets, tt.want)
			}
			if got.Labels[LabelManagedBy] != ControllerName || got.Labels["team"] != "a" {
				t.Errorf("labels %v", got.Labels)
			}
		})
	}
}

func TestReconcileDeletes(t *testing.T) {
	mine := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "e1",
		Labels: map[string]string{LabelManagedBy: ControllerName}}}
	users := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "e2"}}
	noSel := svc(func(s *corev1.Service) { s.Spec.Selector = nil })
	tests := []struct {
		name    string
		objs    []runtime.Object
		deleted bool
	}{
		{"service gone", []runtime.Object{mine}, true},
		{"service gone, user's endpoints", []runtime.Object{users}, true},
		{"selector gone", []runtime.Object{mine, noSel}, true},
		{"selector gone, user's endpoints kept", []runtime.Object{users, noSel}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objs...)
			f := informers.NewSharedInformerFactory(cs, 0)
			c, err := New(Config{Client: cs, Factory: f})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.objs {
				switch o := o.(type) {
				case *corev1.Endpoints:
					_ = f.Core().V1().Endpoints().Informer().GetIndexer().Add(o)
				case *corev1.Service:
					_ = f.Core().V1().Services().Informer().GetIndexer().Add(o)
				}
			}
			if _, err := c.Reconcile(context.Background(), "ns/web"); err != nil {
				t.Fatal(err)
			}
			deleted := false
			for _, a := range cs.Actions() {
				deleted = deleted || a.GetVerb() == "delete"
			}
			if deleted != tt.deleted {
				t.Errorf("deleted = %v, want %v (%v)", deleted, tt.deleted, cs.Actions())
			}
		})
	}
}
