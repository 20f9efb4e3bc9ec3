package cri

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

// newTestRuntime is a runtime that never dials (no CRI call is made)
// with the node's resolv.conf rc and a recorder of its events.
func newTestRuntime(t *testing.T, cfg Config, rc string) (*Runtime, *record.FakeRecorder) {
	t.Helper()
	dir := t.TempDir()
	cfg.ResolvConf = filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(cfg.ResolvConf, []byte(rc), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := record.NewFakeRecorder(10)
	cfg.Endpoint, cfg.Recorder, cfg.VolumeDir, cfg.PodLogDir = "unix://"+filepath.Join(dir, "none.sock"), rec, filepath.Join(dir, "volumes"), filepath.Join(dir, "pods")
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, rec
}

func events(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestNewSandboxConfig(t *testing.T) {
	ctx := context.Background()
	yes := true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{NodeName: "n1",
		Hostname: "db", Subdomain: "dbs", SetHostnameAsFQDN: &yes,
		DNSConfig: &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"}}}}

	// the cluster DNS from kube-system/kube-dns
	cs := fake.NewClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.10"}})
	r, rec := newTestRuntime(t, Config{Client: cs, ClusterDomain: "example.local"}, "nameserver 192.0.2.53\nsearch corp.example\n")
	cfg, err := r.newSandboxConfig(ctx, pod, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Hostname != "db.dbs.ns.svc.example.local" {
		t.Errorf("hostname %q", cfg.Hostname)
	}
	d := cfg.DnsConfig
	if strings.Join(d.Servers, " ") != "10.43.0.10 192.0.2.1 192.0.2.2" ||
		strings.Join(d.Searches, " ") != "ns.svc.example.local svc.example.local example.local corp.example" || strings.Join(d.Options, " ") != "ndots:5" {
		t.Errorf("dns config %+v", d)
	}
	if ev := events(rec); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning DNSConfigForming Nameserver limits were exceeded") {
		t.Errorf("events %q", ev)
	}

	// no cluster DNS: Default, with events on the pod and the node
	pod.Spec.DNSConfig = nil
	r, rec = newTestRuntime(t, Config{Client: fake.NewClientset()}, "nameserver 192.0.2.53\n")
	if cfg, err = r.newSandboxConfig(ctx, pod, 0); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.DnsConfig.Servers, " ") != "192.0.2.53" {
		t.Errorf("fallback dns config %+v", cfg.DnsConfig)
	}
	if ev := events(rec); len(ev) != 2 || !strings.Contains(ev[0], "MissingClusterDNS") || !strings.Contains(ev[1], "MissingClusterDNS") {
		t.Errorf("events %q", ev)
	}

	// --cluster-dns wins; an FQDN hostname over 64 characters fails
	r, rec = newTestRuntime(t, Config{ClusterDNS: []string{"10.96.0.10"}}, "")
	if cfg, err = r.newSandboxConfig(ctx, pod, 0); err != nil || strings.Join(cfg.DnsConfig.Servers, " ") != "10.96.0.10" {
		t.Errorf("configured cluster DNS: %+v, %v", cfg.DnsConfig, err)
	}
	pod.Spec.Hostname = strings.Repeat("h", 40)
	if _, err := r.newSandboxConfig(ctx, pod, 0); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long FQDN: %v", err)
	}
	if ev := events(rec); len(ev) != 1 || !strings.Contains(ev[0], "FailedCreatePodSandBox") {
		t.Errorf("events %q", ev)
	}
}

func TestHostsMount(t *testing.T) {
	r, _ := newTestRuntime(t, Config{}, "")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "u2"}}
	c := &corev1.Container{Name: "c"}
	if m, err := r.hostsMount(pod, c, nil); m != nil || err != nil {
		t.Errorf("no pod IP yet: %v, %v", m, err)
	}
	m, err := r.hostsMount(pod, c, []string{"10.42.0.5"})
	if err != nil || m == nil || m.ContainerPath != "/etc/hosts" {
		t.Fatalf("mount %v, %v", m, err)
	}
	b, err := os.ReadFile(m.HostPath)
	if err != nil || !strings.HasSuffix(string(b), "10.42.0.5\tweb\n") {
		t.Errorf("hosts file %q, %v", b, err)
	}
	c.VolumeMounts = []corev1.VolumeMount{{Name: "h", MountPath: "/etc/hosts/"}}
	if m, err := r.hostsMount(pod, c, []string{"10.42.0.5"}); m != nil || err != nil {
		t.Errorf("a container mounting its own /etc/hosts: %v, %v", m, err)
	}
}
