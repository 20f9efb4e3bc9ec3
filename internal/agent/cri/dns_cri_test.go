package cri_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/dns"
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

// serveClusterDNS runs the cluster DNS server inside the node's network
// namespace on the kube-dns cluster IP (an address of the namespace's
// loopback here; on a real node the proxy DNATs it to a server), so pods
// resolve through it until the test ends.
func serveClusterDNS(t *testing.T, cs kubernetes.Interface, nsPath string) {
	t.Helper()
	name := filepath.Base(nsPath)
	if out, err := exec.Command("ip", "-n", name, "addr", "add", clusterDNSIP+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	s, err := dns.New(dns.Config{Client: cs, Listen: clusterDNSIP + ":53", Upstreams: []string{}, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(nsPath)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns: %w", err)
			return
		}
		done <- s.Run(ctx) // listens here, on the thread inside the namespace
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("cluster DNS did not stop")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("cluster DNS: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("cluster DNS not ready")
	}
}

// clusterDNSFromPod: a ClusterFirst pod resolves a service by its short
// name (search path) and full name through the cluster DNS.
func (h *harness) clusterDNSFromPod(t *testing.T) {
	serveClusterDNS(t, h.cs, h.netns)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "dns-client"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{busybox("c", "sleep 3600")}}}
	p := h.runPod(t, pod, "pod running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	// busybox's nslookup asks every search domain for a name without a
	// dot and fails if one of them does: a short name only needs its
	// answer among them
	for _, c := range []struct {
		name, want string
		exit0      bool
	}{
		{"web-svc.default.svc.cluster.local", "10.43.0.80", true},
		{"kube-dns.kube-system.svc.cluster.local", clusterDNSIP, true},
		{"web-svc", "10.43.0.80", false},
	} {
		out, err := h.cri.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id,
			Cmd: []string{"nslookup", c.name}, Timeout: 10})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(out.Stdout); (c.exit0 && out.ExitCode != 0) || !strings.Contains(got, "Address: "+c.want+"\n") {
			t.Errorf("nslookup %s: exit %d, %q %q; want address %s", c.name, out.ExitCode, got, out.Stderr, c.want)
		}
	}
}
