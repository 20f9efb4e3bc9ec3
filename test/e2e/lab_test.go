package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/lab"
	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestLabPodNetwork runs a three-node lab (each node in its own network
// namespace with its own containerd, host-gw pod routes) and checks with
// stock kubectl that a pod on one node serves HTTP to a pod on another,
// and that the host has no route into the lab.
func TestLabPodNetwork(t *testing.T) {
	labPodNetwork(t, framework.LabOptions{Nodes: 3, PodNetwork: "host-gw"})
}

// TestLabPodNetworkVXLAN is TestLabPodNetwork on two nodes whose pods'
// traffic between nodes goes through VXLAN.
func TestLabPodNetworkVXLAN(t *testing.T) {
	if lab.Missing() == "" {
		if err := lab.VXLANSupported(context.Background()); err != nil {
			t.Skipf("the kernel makes no VXLAN device: %v", err)
		}
	}
	labPodNetwork(t, framework.LabOptions{Nodes: 2, PodNetwork: "vxlan"})
}

func labPodNetwork(t *testing.T, opts framework.LabOptions) {
	k := framework.LatestKubectl(t)
	hostRoutes := hostRouteSet(t)
	start := time.Now()
	lab := env.StartLabWith(t, opts)
	st := lab.State()
	t.Logf("%d nodes Ready after %s", len(st.Nodes), time.Since(start).Round(time.Millisecond))

	out := lab.MustKubectl(t, k, "get", "nodes", "-o", "wide")
	t.Logf("kubectl get nodes -o wide:\n%s", out)
	for _, n := range st.Nodes {
		if f := strings.Fields(lineWith(out, n.Name)); len(f) < 6 || f[1] != "Ready" || f[5] != n.IP {
			t.Fatalf("node %s: want Ready with INTERNAL-IP %s, got %q", n.Name, n.IP, f)
		}
	}

	start = time.Now()
	lab.BuildImages(t)
	t.Logf("images built and imported in %s", time.Since(start).Round(time.Millisecond))
	const ns = "labnet"
	lab.MustKubectl(t, k, "create", "namespace", ns)
	// the last two nodes: with three, neither runs the API server
	serverNode, clientNode := st.Nodes[len(st.Nodes)-2], st.Nodes[len(st.Nodes)-1]
	apply := func(manifest string) {
		t.Helper()
		if r := lab.KubectlWith(k, framework.Cmd{Stdin: manifest}, "apply", "-n", ns, "-f", "-"); r.ExitCode != 0 {
			t.Fatalf("kubectl apply: %s", r)
		}
	}
	apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: skiff.local/testserver:latest
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
`, serverNode.Name))
	lab.MustKubectl(t, k, "wait", "-n", ns, "--for=condition=Ready", "pod/web", "--timeout=90s")
	podIP := strings.TrimSpace(lab.MustKubectl(t, k, "get", "-n", ns, "pod/web", "-o", "jsonpath={.status.podIP}"))
	ip, err := netip.ParseAddr(podIP)
	if err != nil || !netip.MustParsePrefix(st.ClusterCIDR).Contains(ip) {
		t.Fatalf("pod web's IP %q is not in the cluster CIDR %s", podIP, st.ClusterCIDR)
	}

	// the client's node routes the pod's IP as the mode says
	route, err := exec.Command("ip", "-n", clientNode.Netns, "route", "get", podIP).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route get %s in %s: %v: %s", podIP, clientNode.Netns, err, route)
	}
	wantVia := "via " + serverNode.IP + " dev eth0"
	if opts.PodNetwork == "vxlan" {
		wantVia = "dev skiff.vxlan"
	}
	if !strings.Contains(string(route), wantVia) {
		t.Fatalf("%s routes %s as %q, want %q", clientNode.Name, podIP, route, wantVia)
	}

	// The client, on another node, succeeds only if the request does.
	// (busybox nc: the static busybox's wget segfaults without glibc's
	// NSS libraries in the image.)
	apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: %s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: skiff.local/busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 %s 8080); echo \"$r\"; echo \"$r\" | grep -q '^HTTP/1.[01] 200'"]
`, clientNode.Name, podIP))
	phase := waitPhase(t, lab, k, ns, "client", 90*time.Second)
	if logs := lab.Kubectl(k, "logs", "-n", ns, "client"); logs.ExitCode == 0 {
		t.Logf("client's log:\n%s", logs.Stdout)
	}
	if phase != "Succeeded" {
		t.Fatalf("client pod on %s reaching %s:8080 on %s: phase %s, want Succeeded\n%s", clientNode.Name, podIP, serverNode.Name,
			phase, lab.MustKubectl(t, k, "get", "-n", ns, "pod", "client", "-o", "yaml"))
	}

	// The host has no route into the lab: the lab added no route that
	// covers a pod or lab address to the host's tables. Checked on the
	// routing tables, so the test sends no packet off the machine.
	for _, addr := range []string{podIP, serverNode.IP} {
		for _, r := range hostRoutesCovering(t, addr) {
			if !hostRoutes[r] {
				t.Errorf("the host has a new route to %s: %s (only the lab's namespaces may)", addr, r)
			}
		}
	}
}

// waitPhase polls the pod's phase until it is Succeeded or Failed, or
// timeout passes; it returns the last phase.
func waitPhase(t *testing.T, lab *framework.Lab, k framework.Kubectl, ns, pod string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var phase string
	for time.Now().Before(deadline) {
		phase = strings.TrimSpace(lab.MustKubectl(t, k, "get", "-n", ns, "pod", pod, "-o", "jsonpath={.status.phase}"))
		if phase == "Succeeded" || phase == "Failed" {
			return phase
		}
		time.Sleep(time.Second)
	}
	return phase
}

// hostRouteSet returns the destinations of the host's routes.
func hostRouteSet(t *testing.T) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, r := range hostRoutes(t) {
		set[r] = true
	}
	return set
}

func hostRoutes(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Fatalf("ip route show: %v", err)
	}
	var routes []struct {
		Type  string `json:"type"`
		Dst   string `json:"dst"`
		Table string `json:"table"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		t.Fatalf("ip route show: %v", err)
	}
	var dsts []string
	for _, r := range routes {
		dsts = append(dsts, r.Dst+" type="+r.Type+" table="+r.Table)
	}
	return dsts
}

// hostRoutesCovering lists the host's routes, other than default
// routes, whose destination contains addr.
func hostRoutesCovering(t *testing.T, addr string) []string {
	t.Helper()
	a := netip.MustParseAddr(addr)
	var hits []string
	for _, r := range hostRoutes(t) {
		dst := strings.Fields(r)[0]
		p, err := netip.ParsePrefix(dst)
		if err != nil {
			ra, err := netip.ParseAddr(dst)
			if err != nil {
				continue // default
			}
			p = netip.PrefixFrom(ra, 32)
		}
		if p.Contains(a) {
			hits = append(hits, r)
		}
	}
	return hits
}

// lineWith returns the first line of out that holds s.
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// TestLabDetached runs `skiff lab up` (which returns while its server,
// agent and forwarder keep running), uses the cluster through the printed
// kubeconfig and removes it with `skiff lab down --purge` from another
// process, checking that nothing is left.
func TestLabDetached(t *testing.T) {
	if why := lab.Missing(); why != "" {
		t.Skip(why)
	}
	k := framework.LatestKubectl(t)
	dir := filepath.Join(t.TempDir(), "lab")
	name := fmt.Sprintf("det%d", os.Getpid()%100000)
	skiff := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var out, errb strings.Builder
		cmd := exec.CommandContext(ctx, env.Binary, args...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return out.String(), fmt.Errorf("skiff %s: %w\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), nil
	}
	t.Cleanup(func() { _, _ = skiff("lab", "down", "--dir", dir) }) // after a failure; idempotent
	out, err := skiff("lab", "up", "--dir", dir, "--name", name, "--nodes", "2", "--log-level", "warn")
	if err != nil {
		t.Fatal(err)
	}
	var kubeconfig string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "KUBECONFIG="); ok {
			kubeconfig = v
		}
	}
	if kubeconfig == "" {
		t.Fatalf("lab up printed no KUBECONFIG= line:\n%s", out)
	}
	l, err := lab.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	namespaces := l.Namespaces()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := exec.CommandContext(ctx, k.Path, "--kubeconfig", kubeconfig, "get", "nodes", "-o", "name").CombinedOutput()
	if err != nil || strings.Count(string(r), "node/"+name+"-") != 2 {
		t.Fatalf("kubectl get nodes through the detached forwarder: %v\n%s", err, r)
	}
	if _, err := skiff("lab", "down", "--dir", dir, "--purge"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("lab down --purge left %s", dir)
	}
	out2, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out2), "skiff-"+name+"-") {
		t.Errorf("lab down left namespaces:\n%s", out2)
	}
	if pids := lab.ProcessesIn(namespaces); len(pids) > 0 {
		t.Errorf("lab down left processes in the lab's namespaces: %v", pids)
	}
	for _, p := range []lab.Process{st.Server, st.Forwarder, st.Nodes[0].Agent, st.Nodes[1].Agent} {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID)); err == nil && strings.Contains(string(b), dir) {
			t.Errorf("lab down left process %d: %s", p.PID, strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
}
