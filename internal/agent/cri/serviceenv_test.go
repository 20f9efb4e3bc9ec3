package cri

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func TestServiceEnv(t *testing.T) {
	kube := svc("default", "kubernetes", "10.43.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP})
	kubeEnv := map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.43.0.1", "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
		"KUBERNETES_PORT": "tcp://10.43.0.1:443", "KUBERNETES_PORT_443_TCP": "tcp://10.43.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.43.0.1",
	}
	web := svc("app", "my-web", "10.43.5.6", corev1.ServicePort{Port: 80}, corev1.ServicePort{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP})
	webEnv := map[string]string{
		"MY_WEB_SERVICE_HOST": "10.43.5.6", "MY_WEB_SERVICE_PORT": "80", "MY_WEB_SERVICE_PORT_DNS_UDP": "53",
		"MY_WEB_PORT":        "tcp://10.43.5.6:80",
		"MY_WEB_PORT_80_TCP": "tcp://10.43.5.6:80", "MY_WEB_PORT_80_TCP_PROTO": "tcp", "MY_WEB_PORT_80_TCP_PORT": "80", "MY_WEB_PORT_80_TCP_ADDR": "10.43.5.6",
		"MY_WEB_PORT_53_UDP": "udp://10.43.5.6:53", "MY_WEB_PORT_53_UDP_PROTO": "udp", "MY_WEB_PORT_53_UDP_PORT": "53", "MY_WEB_PORT_53_UDP_ADDR": "10.43.5.6",
	}
	headless := svc("app", "db", corev1.ClusterIPNone, corev1.ServicePort{Port: 5432})
	external := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "ext"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}}
	other := svc("other", "cache", "10.43.7.7", corev1.ServicePort{Port: 6379})
	ownKube := svc("app", "kubernetes", "10.43.9.9", corev1.ServicePort{Port: 8443})
	union := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			maps.Copy(out, m)
		}
		return out
	}
	cases := []struct {
		name     string
		ns       string
		links    bool
		services []*corev1.Service
		want     map[string]string
	}{
		{"namespace's services and kubernetes", "app", true, []*corev1.Service{kube, web, headless, external, other}, union(kubeEnv, webEnv)},
		{"service links off: only kubernetes", "app", false, []*corev1.Service{kube, web, other}, kubeEnv},
		{"in default", "default", false, []*corev1.Service{kube}, kubeEnv},
		{"a kubernetes service of the namespace wins", "app", true, []*corev1.Service{kube, ownKube}, map[string]string{
			"KUBERNETES_SERVICE_HOST": "10.43.9.9", "KUBERNETES_SERVICE_PORT": "8443", "KUBERNETES_PORT": "tcp://10.43.9.9:8443",
			"KUBERNETES_PORT_8443_TCP": "tcp://10.43.9.9:8443", "KUBERNETES_PORT_8443_TCP_PROTO": "tcp",
			"KUBERNETES_PORT_8443_TCP_PORT": "8443", "KUBERNETES_PORT_8443_TCP_ADDR": "10.43.9.9"}},
		{"the same, listed the other way round", "app", true, []*corev1.Service{ownKube, kube}, map[string]string{
			"KUBERNETES_SERVICE_HOST": "10.43.9.9", "KUBERNETES_SERVICE_PORT": "8443", "KUBERNETES_PORT": "tcp://10.43.9.9:8443",
			"KUBERNETES_PORT_8443_TCP": "tcp://10.43.9.9:8443", "KUBERNETES_PORT_8443_TCP_PROTO": "tcp",
			"KUBERNETES_PORT_8443_TCP_PORT": "8443", "KUBERNETES_PORT_8443_TCP_ADDR": "10.43.9.9"}},
		{"no services", "app", true, nil, map[string]string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := serviceEnv(c.ns, c.links, c.services)
			if !maps.Equal(got, c.want) {
				for _, k := range slices.Sorted(maps.Keys(union(got, c.want))) {
					if got[k] != c.want[k] {
						t.Errorf("%s = %q, want %q", k, got[k], c.want[k])
					}
				}
			}
		})
	}
}

// Service variables come after the container's own, which win, and
// $(VAR) in values and commands sees them.
func TestContainerEnvServiceLinks(t *testing.T) {
	refs := fakeRefs{svcEnv: map[string]string{"WEB_SERVICE_HOST": "10.43.5.6", "WEB_SERVICE_PORT": "80", "KUBERNETES_SERVICE_HOST": "10.43.0.1"}}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"}}
	c := &corev1.Container{Name: "c", Command: []string{"wget", "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/"},
		Env: []corev1.EnvVar{{Name: "URL", Value: "http://$(WEB_SERVICE_HOST)/"}, {Name: "WEB_SERVICE_PORT", Value: "8080"}}}
	cfg, err := containerConfig(context.Background(), refs, p, c, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, kv := range cfg.Envs {
		got = append(got, kv.Key+"="+string(kv.Value))
	}
	want := "URL=http://10.43.5.6/ WEB_SERVICE_PORT=8080 KUBERNETES_SERVICE_HOST=10.43.0.1 WEB_SERVICE_HOST=10.43.5.6"
	if strings.Join(got, " ") != want {
		t.Errorf("env %q, want %q", strings.Join(got, " "), want)
	}
	if cmd := strings.Join(cfg.Command, " "); cmd != "wget http://10.43.5.6:8080/" {
		t.Errorf("command %q", cmd)
	}
}
