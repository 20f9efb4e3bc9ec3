package core

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func newService() *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: ago(2 * time.Hour)},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
	serviceStrategy{}.Default(svc)
	return svc
}

func TestServiceDefault(t *testing.T) {
	svc := newService()
	s := svc.Spec
	if s.Type != corev1.ServiceTypeClusterIP || s.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("type/affinity = %s/%s", s.Type, s.SessionAffinity)
	}
	if s.Ports[0].Protocol != corev1.ProtocolTCP || s.Ports[0].TargetPort != intstr.FromInt32(80) {
		t.Errorf("port = %+v", s.Ports[0])
	}
	if s.IPFamilyPolicy == nil || *s.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
		t.Errorf("ipFamilyPolicy = %v", s.IPFamilyPolicy)
	}
	if len(s.IPFamilies) != 1 || s.IPFamilies[0] != corev1.IPv4Protocol {
		t.Errorf("ipFamilies = %v", s.IPFamilies)
	}
	if s.InternalTrafficPolicy == nil || *s.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
		t.Errorf("internalTrafficPolicy = %v", s.InternalTrafficPolicy)
	}
	if s.ExternalTrafficPolicy != "" {
		t.Errorf("externalTrafficPolicy = %q for ClusterIP", s.ExternalTrafficPolicy)
	}

	np := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}}}
	serviceStrategy{}.Default(np)
	if np.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("LB externalTrafficPolicy = %q", np.Spec.ExternalTrafficPolicy)
	}
	if np.Spec.AllocateLoadBalancerNodePorts == nil || !*np.Spec.AllocateLoadBalancerNodePorts {
		t.Errorf("allocateLoadBalancerNodePorts = %v", np.Spec.AllocateLoadBalancerNodePorts)
	}
	if np.Spec.Ports[0].TargetPort != intstr.FromString("http") {
		t.Errorf("named targetPort overwritten: %v", np.Spec.Ports[0].TargetPort)
	}

	en := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	serviceStrategy{}.Default(en)
	if en.Spec.IPFamilyPolicy != nil || en.Spec.IPFamilies != nil || en.Spec.InternalTrafficPolicy != nil {
		t.Errorf("ExternalName got IP defaults: %+v", en.Spec)
	}
	checkErrs(t, serviceStrategy{}.ValidateCreate(en))

	old := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Port: 53}}}}
	serviceStrategy{}.Default(old)
	if len(old.Spec.ClusterIPs) != 1 || old.Spec.ClusterIPs[0] != "10.96.0.10" {
		t.Errorf("clusterIPs = %v", old.Spec.ClusterIPs)
	}
}

func TestServicePrepareForCreate(t *testing.T) {
	svc := newService()
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}
	serviceStrategy{}.PrepareForCreate(svc)
	if len(svc.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("status kept: %+v", svc.Status)
	}
}

func TestServiceValidateCreate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Service)
		want   []wantErr
	}{
		{"valid", func(*corev1.Service) {}, nil},
		{"headless without ports", func(s *corev1.Service) {
			s.Spec.Ports = nil
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"}
		}, nil},
		{"ports required", func(s *corev1.Service) { s.Spec.Ports = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.ports"}}},
		{"names required with two ports", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(443)})
		}, []wantErr{{field.ErrorTypeRequired, "spec.ports[0].name"}, {field.ErrorTypeRequired, "spec.ports[1].name"}}},
		{"duplicate port names", func(s *corev1.Service) {
			s.Spec.Ports[0].Name = "http"
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "http", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(443)})
		}, []wantErr{{field.ErrorTypeDuplicate, "spec.ports[1].name"}}},
		{"duplicate port", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, s.Spec.Ports[0])
			s.Spec.Ports[0].Name, s.Spec.Ports[1].Name = "a", "b"
		}, []wantErr{{field.ErrorTypeDuplicate, "spec.ports[1]"}}},
		{"bad port", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 },
			[]wantErr{{field.ErrorTypeInvalid, "spec.ports[0].port"}}},
		{"bad protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "ICMP" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.ports[0].protocol"}}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Magic" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.type"}}},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 },
			[]wantErr{{field.ErrorTypeForbidden, "spec.ports[0].nodePort"}}},
		{"nodePort in range", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			s.Spec.Ports[0].NodePort = 30080
		}, nil},
		{"nodePort out of range", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			s.Spec.Ports[0].NodePort = 70000
		}, []wantErr{{field.ErrorTypeInvalid, "spec.ports[0].nodePort"}}},
		{"externalName required", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.IPFamilies, s.Spec.IPFamilyPolicy, s.Spec.InternalTrafficPolicy = nil, nil, nil
		}, []wantErr{{field.ErrorTypeRequired, "spec.externalName"}}},
		{"headless NodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.clusterIPs[0]"}}},
		{"bad cluster IP", func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.300", []string{"10.0.0.300"}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.clusterIPs[0]"}}},
		{"clusterIPs mismatch", func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.0.0.1", []string{"10.0.0.2"}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.clusterIPs"}}},
		{"externalTrafficPolicy on ClusterIP", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal },
			[]wantErr{{field.ErrorTypeInvalid, "spec.externalTrafficPolicy"}}},
		{"bad selector", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "bad value"} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.selector"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := newService()
			c.mutate(svc)
			checkErrs(t, serviceStrategy{}.ValidateCreate(svc), c.want...)
		})
	}

}

func TestServiceUpdate(t *testing.T) {
	old := newService()
	old.Spec.ClusterIP, old.Spec.ClusterIPs = "10.96.0.20", []string{"10.96.0.20"}

	// A client that leaves the cluster IP out keeps the allocated one.
	svc := newService()
	serviceStrategy{}.PrepareForUpdate(svc, old)
	if svc.Spec.ClusterIP != "10.96.0.20" || len(svc.Spec.ClusterIPs) != 1 {
		t.Errorf("cluster IP not kept: %q %v", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
	}
	checkErrs(t, serviceStrategy{}.ValidateUpdate(svc, old))

	changed := old.DeepCopy()
	changed.Spec.ClusterIP, changed.Spec.ClusterIPs = "10.96.0.21", []string{"10.96.0.21"}
	checkErrs(t, serviceStrategy{}.ValidateUpdate(changed, old), wantErr{field.ErrorTypeInvalid, "spec.clusterIPs[0]"})

	// Node ports are kept by port name across NodePort updates.
	oldNP := old.DeepCopy()
	oldNP.Spec.Type = corev1.ServiceTypeNodePort
	oldNP.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	oldNP.Spec.Ports[0].NodePort = 31000
	np := oldNP.DeepCopy()
	np.Spec.Ports[0].NodePort = 0
	serviceStrategy{}.PrepareForUpdate(np, oldNP)
	if np.Spec.Ports[0].NodePort != 31000 {
		t.Errorf("nodePort = %d, want 31000", np.Spec.Ports[0].NodePort)
	}

	// NodePort -> ClusterIP drops the node port and external traffic policy.
	back := oldNP.DeepCopy()
	back.Spec.Type = corev1.ServiceTypeClusterIP
	serviceStrategy{}.PrepareForUpdate(back, oldNP)
	if back.Spec.Ports[0].NodePort != 0 || back.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("type change kept %d / %q", back.Spec.Ports[0].NodePort, back.Spec.ExternalTrafficPolicy)
	}
	checkErrs(t, serviceStrategy{}.ValidateUpdate(back, oldNP))
}

func TestServiceFieldsAndRow(t *testing.T) {
	svc := newService()
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "10.96.0.20", []string{"10.96.0.20"}
	f := serviceStrategy{}.Fields(svc)
	if f["spec.clusterIP"] != "10.96.0.20" || f["spec.type"] != "ClusterIP" || len(f) != 2 {
		t.Errorf("fields = %v", f)
	}

	cases := []struct {
		name   string
		mutate func(*corev1.Service)
		want   []interface{}
	}{
		{"cluster IP", func(*corev1.Service) {},
			[]interface{}{"web", "ClusterIP", "10.96.0.20", "<none>", "80/TCP", "120m", "app=web"}},
		{"node port", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		}, []interface{}{"web", "NodePort", "10.96.0.20", "<none>", "80:30080/TCP", "120m", "app=web"}},
		{"pending load balancer", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer },
			[]interface{}{"web", "LoadBalancer", "10.96.0.20", "<pending>", "80/TCP", "120m", "app=web"}},
		{"load balancer", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		}, []interface{}{"web", "LoadBalancer", "10.96.0.20", "192.0.2.10", "80/TCP", "120m", "app=web"}},
		{"external name", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
			s.Spec.ClusterIPs = nil
			s.Spec.Ports = nil
			s.Spec.Selector = nil
		}, []interface{}{"web", "ExternalName", "<none>", "db.example.com", "<none>", "120m", "<none>"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := svc.DeepCopy()
			c.mutate(s)
			checkRow(t, serviceStrategy{}.Row(s, testNow), c.want)
		})
	}
}

func checkRow(t *testing.T, got, want []interface{}) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("row = %#v, want %#v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("cell %d = %#v, want %#v", i, got[i], want[i])
		}
	}
}
