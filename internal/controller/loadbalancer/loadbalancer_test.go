package loadbalancer

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

func TestParsePool(t *testing.T) {
	tests := []struct {
		spec    string
		first   string
		count   int
		wantErr bool
	}{
		{"192.168.50.0/30", "192.168.50.1", 2, false},
		{"192.168.50.7/32", "192.168.50.7", 1, false},
		{"192.168.50.10-192.168.50.12", "192.168.50.10", 3, false},
		{"10.0.0.1-10.0.0.1, 10.0.1.0/31", "10.0.0.1", 3, false},
		{"", "", 0, false},
		{"10.0.0.5-10.0.0.1", "", 0, true},
		{"fd00::/120", "", 0, true},
		{"nonsense", "", 0, true},
	}
	for _, tt := range tests {
		p, err := ParsePool(tt.spec)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%q: err %v", tt.spec, err)
		}
		if err != nil {
			continue
		}
		n := 0
		var first netip.Addr
		for {
			ip, err := p.Allocate("svc"+string(rune('a'+n)), netip.Addr{})
			if err != nil {
				break
			}
			if n == 0 {
				first = ip
			}
			n++
		}
		if n != tt.count || (n > 0 && first.String() != tt.first) {
			t.Errorf("%q: %d addresses from %v, want %d from %s", tt.spec, n, first, tt.count, tt.first)
		}
	}
}

func TestPoolOccupyRelease(t *testing.T) {
	p, _ := ParsePool("10.0.0.1-10.0.0.2")
	a := netip.MustParseAddr("10.0.0.1")
	if !p.Occupy("x", a) || p.Occupy("y", a) || p.Occupy("x", netip.MustParseAddr("10.9.9.9")) {
		t.Fatal("occupy: want x to hold .1, y refused, outside refused")
	}
	if ip, _ := p.Allocate("y", a); ip.String() != "10.0.0.2" {
		t.Fatalf("y got %v, want the free .2 (its wish .1 is taken)", ip)
	}
	if _, err := p.Allocate("z", netip.Addr{}); err != ErrExhausted {
		t.Fatalf("z: %v, want exhausted", err)
	}
	p.Release("x")
	if ip, err := p.Allocate("z", netip.Addr{}); err != nil || ip != a {
		t.Fatalf("after release z got %v, %v", ip, err)
	}
}

func lbService(name string, typ corev1.ServiceType, ingress ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: typ, ClusterIP: "10.43.0.10"}}
	for _, ip := range ingress {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name     string
		pool     string
		services []*corev1.Service
		key      string
		ingress  string // the status written; "-" for no write, "" for cleared
		event    string
	}{
		{"allocates the first free address", "192.168.50.10-192.168.50.11",
			[]*corev1.Service{lbService("a", corev1.ServiceTypeLoadBalancer, "192.168.50.10"), lbService("b", corev1.ServiceTypeLoadBalancer)},
			"default/b", "192.168.50.11", ReasonAllocated},
		{"keeps what it has", "192.168.50.10-192.168.50.11",
			[]*corev1.Service{lbService("a", corev1.ServiceTypeLoadBalancer, "192.168.50.11")}, "default/a", "-", ""},
		{"exhausted stays pending", "192.168.50.10/32",
			[]*corev1.Service{lbService("a", corev1.ServiceTypeLoadBalancer, "192.168.50.10"), lbService("b", corev1.ServiceTypeLoadBalancer)},
			"default/b", "-", ReasonAllocationFailed},
		{"no pool", "", []*corev1.Service{lbService("a", corev1.ServiceTypeLoadBalancer)}, "default/a", "-", "no LoadBalancer IP pool configured"},
		{"type changed away clears the status", "192.168.50.10/32",
			[]*corev1.Service{lbService("a", corev1.ServiceTypeClusterIP, "192.168.50.10")}, "default/a", "", ""},
		{"cluster IP service untouched", "192.168.50.10/32",
			[]*corev1.Service{lbService("a", corev1.ServiceTypeClusterIP)}, "default/a", "-", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for _, s := range tt.services {
				objs = append(objs, s)
			}
			cs := fake.NewClientset(objs...)
			f := informers.NewSharedInformerFactory(cs, 0)
			rec := record.NewFakeRecorder(10)
			c, err := New(Config{Client: cs, Factory: f, Recorder: rec, Pool: tt.pool})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tt.services {
				_ = f.Core().V1().Services().Informer().GetIndexer().Add(s)
				if ours(s) {
					for _, ip := range ingressIPs(s) {
						c.pool.Occupy(s.Namespace+"/"+s.Name, ip)
					}
				}
			}
			if _, err := c.Reconcile(context.Background(), tt.key); err != nil {
				t.Fatal(err)
			}
			written := "-"
			for _, a := range cs.Actions() {
				if u, ok := a.(k8stesting.UpdateAction); ok && a.GetSubresource() == "status" {
					written = ""
					if in := u.GetObject().(*corev1.Service).Status.LoadBalancer.Ingress; len(in) > 0 {
						written = in[0].IP
					}
				}
			}
			if written != tt.ingress {
				t.Errorf("status ingress written %q, want %q", written, tt.ingress)
			}
			event := ""
			select {
			case event = <-rec.Events:
			default:
			}
			if !strings.Contains(event, tt.event) || (tt.event == "") != (event == "") {
				t.Errorf("event %q, want %q", event, tt.event)
			}
		})
	}
}
