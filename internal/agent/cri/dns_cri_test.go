package cri_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The node's resolv.conf in the test (the runtime's Config.ResolvConf).
const testResolvConf = "nameserver 192.0.2.53\nsearch test.example\noptions timeout:1\n"

// clusterDNSIP is the test's kube-dns cluster IP.
const clusterDNSIP = "10.43.0.10"

// setupClusterDNS writes the node's resolv.conf and creates, before the
// agent starts, the kube-dns service (its cluster IP is the pods'
// nameserver) and a service whose variables pods in default get.
func setupClusterDNS(t *testing.T, cs kubernetes.Interface, dir string) (resolvConf string) {
	t.Helper()
	resolvConf = filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolvConf, []byte(testResolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, svc := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: "kube-system"}, Spec: corev1.ServiceSpec{ClusterIP: clusterDNSIP,
			Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "web-svc", Namespace: "default"}, Spec: corev1.ServiceSpec{ClusterIP: "10.43.0.80",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
	} {
		if _, err := cs.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return resolvConf
}

// dnsAndHosts: a ClusterFirst pod's resolv.conf, hostname, /etc/hosts and
// service variables inside the container, and a Default pod's resolv.conf.
func (h *harness) dnsAndHosts(t *testing.T) {
	ctx := context.Background()
	no := false
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dns-web"}, Spec: corev1.PodSpec{
		Hostname: "web-0", Subdomain: "webs",
		HostAliases: []corev1.HostAlias{{IP: "192.0.2.9", Hostnames: []string{"foo.local", "bar.local"}}},
		DNSConfig:   &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "edns0"}}},
		Containers:  []corev1.Container{busybox("c", "sleep 3600")},
	}}
	p := h.runPod(t, pod, "pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	exec := func(p *corev1.Pod, script string) string {
		t.Helper()
		id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
		out, err := h.cri.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Timeout: 10})
		if err != nil {
			t.Fatal(err)
		}
		return string(out.Stdout) + string(out.Stderr)
	}
	want := map[string]string{
		"cat /etc/resolv.conf": "search default.svc.cluster.local svc.cluster.local cluster.local test.example\nnameserver " + clusterDNSIP + "\noptions ndots:5 edns0\n",
		"hostname":             "web-0\n",
		"cat /etc/hosts": "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n" +
			p.Status.PodIP + "\tweb-0.webs.default.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n192.0.2.9\tfoo.local\tbar.local\n",
		"env | grep -E '^(KUBERNETES|WEB_SVC)_SERVICE_(HOST|PORT)=' | sort": "KUBERNETES_SERVICE_HOST=10.43.0.1\nKUBERNETES_SERVICE_PORT=443\n" +
			"WEB_SVC_SERVICE_HOST=10.43.0.80\nWEB_SVC_SERVICE_PORT=80\n",
		"echo $WEB_SVC_PORT_80_TCP": "tcp://10.43.0.80:80\n",
	}
	for script, w := range want {
		if got := exec(p, script); got != w {
			t.Errorf("%s:\n%q\nwant\n%q", script, got, w)
		}
	}
	// dnsPolicy Default: the node's resolv.conf; enableServiceLinks off:
	// only the kubernetes service's variables
	def := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dns-default"}, Spec: corev1.PodSpec{
		DNSPolicy: corev1.DNSDefault, EnableServiceLinks: &no, Containers: []corev1.Container{busybox("c", "sleep 3600")}}}
	p = h.runPod(t, def, "pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	if got, w := exec(p, "cat /etc/resolv.conf"), "search test.example\nnameserver 192.0.2.53\noptions timeout:1\n"; got != w {
		t.Errorf("Default pod's resolv.conf %q, want %q", got, w)
	}
	if got, w := exec(p, "env | grep -c _SERVICE_HOST="), "1\n"; got != w {
		t.Errorf("service variables without service links: %q, want %q", got, w)
	}
}
