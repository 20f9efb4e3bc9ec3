package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/lab"
	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestServiceNetworking checks services end to end in a three-node lab
// with stock kubectl, all traffic inside the lab's namespaces: a
// Deployment of the test server (3 replicas, one per node) behind a
// ClusterIP, a NodePort, a LoadBalancer, a headless and an ExternalName
// service, and client pods that reach them by name through cluster DNS and
// the nftables proxy of their node (`testserver get`, `testserver dns`).
// It covers: names (svc.ns, the FQDN and svc) and the spread over all
// replicas, NodePort on every node's IP, the LoadBalancer's IP (from the
// lab pool; a pod reaches it through its node's proxy), ExternalName as a
// CNAME, headless A records (and a StatefulSet pod's hostname.service
// name, SRV for a named port), a pod whose readiness fails leaving the
// traffic, scale to zero refusing connections at once, and the client
// node's agent (which runs the proxy) killed with SIGKILL and restarted
// while a pod loops through the service.
func TestServiceNetworking(t *testing.T) {
	k := framework.LatestKubectl(t)
	pool := labLBPool(t, lab.DefaultSubnet)
	start := time.Now()
	l := env.StartLabWith(t, framework.LabOptions{Nodes: 3, ServerArgs: []string{"--load-balancer-pool", pool}})
	st := l.State()
	l.BuildImages(t)
	t.Logf("lab of %d nodes with images after %s (LoadBalancer pool %s)", len(st.Nodes), time.Since(start).Round(time.Millisecond), pool)

	const ns = "svcnet"
	l.MustKubectl(t, k, "create", "namespace", ns)
	apply := func(manifest string) {
		t.Helper()
		if r := l.KubectlWith(k, framework.Cmd{Stdin: manifest}, "apply", "-n", ns, "-f", "-"); r.ExitCode != 0 {
			t.Fatalf("kubectl apply: %s", r)
		}
	}
	clientIdx := len(st.Nodes) - 1
	clientNode := st.Nodes[clientIdx]
	apply(fmt.Sprintf(serviceManifests, clientNode.Name))
	l.MustKubectl(t, k, "rollout", "status", "-n", ns, "deployment/web", "--timeout=120s")
	l.MustKubectl(t, k, "wait", "-n", ns, "--for=condition=Ready", "pod/client", "--timeout=90s")
	pods := webPods(t, l, k, ns)
	t.Logf("web pods:\n%s", l.MustKubectl(t, k, "get", "pods", "-n", ns, "-o", "wide"))
	nodesOf := map[string]bool{}
	for _, p := range pods {
		nodesOf[p.node] = true
	}
	if len(pods) != 3 || len(nodesOf) != 3 {
		t.Fatalf("want 3 web pods on 3 nodes (topology spread), got %+v", pods)
	}

	// get runs `testserver get` in the client pod.
	get := func(args ...string) (string, getSummary) {
		t.Helper()
		r := l.Kubectl(k, append([]string{"exec", "-n", ns, "client", "--", "/testserver", "get"}, args...)...)
		if r.Err != nil || (r.ExitCode != 0 && r.ExitCode != 1) {
			t.Fatalf("testserver get %s: %s", strings.Join(args, " "), r)
		}
		return r.Stdout, parseGetSummary(t, r.Stdout)
	}
	dnsQuery := func(typ, name string) string {
		t.Helper()
		return l.MustKubectl(t, k, "exec", "-n", ns, "client", "--", "/testserver", "dns", typ, name)
	}

	// allThree waits until the client reaches all three replicas: pods
	// become ready one by one and the client's proxy syncs at most once a
	// second, so kubectl rollout status can return before it has them.
	allThree := func(t *testing.T) {
		t.Helper()
		poll(t, "the client's proxy balances over the 3 replicas", 30*time.Second, func() (bool, string) {
			_, s := get("-n", "15", "-min", "0", "http://web."+ns+"/")
			return len(s.pods) == 3 && s.fail == 0, s.line
		})
	}

	t.Run("ClusterIPByName", func(t *testing.T) {
		allThree(t)
		_, s := get("-n", "60", "-min", "60", "http://web."+ns+"/")
		t.Logf("60 requests to web.%s from %s: %s", ns, clientNode.Name, s.line)
		if s.fail != 0 || len(s.pods) != 3 {
			t.Errorf("want 60 answers from all 3 replicas, got %s", s.line)
		}
		for _, name := range []string{"web." + ns + ".svc.cluster.local", "web"} {
			if out, s := get("-n", "5", "-min", "5", "http://"+name+"/"); s.fail != 0 {
				t.Errorf("requests to %s: %s", name, out)
			}
		}
	})

	t.Run("NodePort", func(t *testing.T) {
		np := strings.TrimSpace(l.MustKubectl(t, k, "get", "svc", "-n", ns, "web-np", "-o", "jsonpath={.spec.ports[0].nodePort}"))
		for _, n := range st.Nodes {
			out, s := get("-n", "3", "-min", "3", "http://"+n.IP+":"+np+"/")
			t.Logf("NodePort %s:%s: %s", n.IP, np, s.line)
			if s.fail != 0 {
				t.Errorf("NodePort on %s (%s:%s):\n%s", n.Name, n.IP, np, out)
			}
		}
	})

	t.Run("LoadBalancer", func(t *testing.T) {
		var ip string
		poll(t, "service web-lb gets a LoadBalancer IP", 60*time.Second, func() (bool, string) {
			ip = strings.TrimSpace(l.MustKubectl(t, k, "get", "svc", "-n", ns, "web-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"))
			return ip != "", "no ingress IP"
		})
		out := l.MustKubectl(t, k, "get", "svc", "-n", ns, "web-lb")
		t.Logf("kubectl get svc web-lb:\n%s", out)
		if row := rowNamed(tableRows(out), "web-lb"); len(row) < 4 || row[3] != ip {
			t.Errorf("EXTERNAL-IP column: %q, want %s", row, ip)
		}
		if a, err := netip.ParseAddr(ip); err != nil || !netip.MustParsePrefix(lab.DefaultSubnet).Contains(a) {
			t.Errorf("LoadBalancer IP %q is not in the lab subnet %s", ip, lab.DefaultSubnet)
		}
		if old, ok := kubectlVersion("1.27"); ok {
			out := l.MustKubectl(t, old, "get", "svc", "-n", ns, "-o", "wide")
			t.Logf("kubectl 1.27 get svc -o wide:\n%s", out)
			if row := rowNamed(tableRows(out), "web-lb"); len(row) < 4 || row[3] != ip {
				t.Errorf("kubectl 1.27 get svc: web-lb row %q, want EXTERNAL-IP %s\n%s", row, ip, out)
			}
		}
		if out, s := get("-n", "10", "-min", "10", "http://"+ip+"/"); s.fail != 0 {
			t.Errorf("LoadBalancer %s:\n%s", ip, out)
		} else {
			t.Logf("LoadBalancer %s: %s", ip, s.line)
		}
	})

	t.Run("ExternalName", func(t *testing.T) {
		out := dnsQuery("CNAME", "ext."+ns+".svc.cluster.local")
		t.Logf("CNAME ext.%s.svc.cluster.local:\n%s", ns, out)
		if !strings.Contains(out, "CNAME web."+ns+".svc.cluster.local.\n") {
			t.Errorf("ExternalName ext: want a CNAME to web.%s.svc.cluster.local., got:\n%s", ns, out)
		}
	})

	t.Run("Headless", func(t *testing.T) {
		out := dnsQuery("A", "web-headless."+ns+".svc.cluster.local")
		var got, want []string
		for _, line := range lines(out) {
			if a, ok := strings.CutPrefix(line, "A "); ok {
				got = append(got, a)
			}
		}
		for _, p := range webPods(t, l, k, ns) {
			want = append(want, p.ip)
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("headless A records %v, want the pods' IPs %v", got, want)
		}

		// SRV for the named port of the ClusterIP service
		srv := dnsQuery("SRV", "_http._tcp.web."+ns+".svc.cluster.local")
		if !strings.Contains(srv, " 80 web."+ns+".svc.cluster.local.\n") {
			t.Errorf("SRV _http._tcp.web: want port 80 at web.%s.svc.cluster.local., got:\n%s", ns, srv)
		}

		// a StatefulSet pod's <hostname>.<service> name
		l.MustKubectl(t, k, "rollout", "status", "-n", ns, "statefulset/db", "--timeout=120s")
		ip := strings.TrimSpace(l.MustKubectl(t, k, "get", "pod", "-n", ns, "db-1", "-o", "jsonpath={.status.podIP}"))
		poll(t, "db-1.db."+ns+".svc.cluster.local has db-1's IP", 30*time.Second, func() (bool, string) {
			out := dnsQuery("A", "db-1.db."+ns+".svc.cluster.local")
			return strings.Contains(out, "A "+ip+"\n"), out
		})
		if out, s := get("-n", "3", "-min", "3", "http://db-1.db:8080/"); s.fail != 0 || s.pods["db-1"] != 3 {
			t.Errorf("http://db-1.db:8080/ should answer from db-1:\n%s", out)
		}
	})

	t.Run("ReadinessFailure", func(t *testing.T) {
		// the replica on the client's node: its proxy's own local endpoint
		var bad webPod
		for _, p := range webPods(t, l, k, ns) {
			if p.node == clientNode.Name {
				bad = p
			}
		}
		if bad.name == "" {
			t.Fatalf("no web pod on %s", clientNode.Name)
		}
		l.MustKubectl(t, k, "exec", "-n", ns, bad.name, "--", "touch", "/tmp/fail")
		l.MustKubectl(t, k, "wait", "-n", ns, "--for=condition=Ready=false", "pod/"+bad.name, "--timeout=60s")
		poll(t, "the not-ready pod's endpoint is not ready in the EndpointSlice", 30*time.Second, func() (bool, string) {
			out := l.MustKubectl(t, k, "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web",
				"-o", `jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready}{"\n"}{end}`)
			return strings.Contains(out, bad.name+"=false\n"), out
		})
		poll(t, "the not-ready pod leaves the proxy's rules", 30*time.Second, func() (bool, string) {
			_, s := get("-n", "10", "-min", "0", "http://web/")
			return s.pods[bad.name] == 0 && s.ok == 10, s.line
		})
		_, s := get("-n", "30", "-min", "30", "http://web/")
		t.Logf("with %s not ready: %s", bad.name, s.line)
		if s.pods[bad.name] != 0 || s.fail != 0 || len(s.pods) != 2 {
			rules, _ := exec.Command("ip", "netns", "exec", clientNode.Netns, "nft", "list", "ruleset").CombinedOutput()
			t.Errorf("want 30 answers from the 2 ready pods only, got %s\npod %s (%s) on %s\n%s\nnftables of %s:\n%s", s.line, bad.name, bad.ip, bad.node,
				l.MustKubectl(t, k, "get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web", "-o", "yaml"), clientNode.Name, rules)
		}
		l.MustKubectl(t, k, "exec", "-n", ns, bad.name, "--", "rm", "/tmp/fail")
		l.MustKubectl(t, k, "wait", "-n", ns, "--for=condition=Ready", "pod/"+bad.name, "--timeout=60s")
		allThree(t)
	})

	t.Run("ScaleToZero", func(t *testing.T) {
		l.MustKubectl(t, k, "scale", "-n", ns, "deployment/web", "--replicas=0")
		l.MustKubectl(t, k, "wait", "-n", ns, "--for=delete", "pod", "-l", "app=web", "--timeout=60s")
		var out string
		poll(t, "connections to the empty service are refused", 30*time.Second, func() (bool, string) {
			var s getSummary
			out, s = get("-n", "3", "-min", "0", "-timeout", "5s", "http://web/")
			return s.kinds["refused"] == 3, out
		})
		t.Logf("no endpoints, 3 requests:\n%s", out)
		l.MustKubectl(t, k, "scale", "-n", ns, "deployment/web", "--replicas=3")
		l.MustKubectl(t, k, "rollout", "status", "-n", ns, "deployment/web", "--timeout=120s")
		allThree(t)
	})

	t.Run("ProxyRestart", func(t *testing.T) {
		const n = 300
		apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: looper}
spec:
  nodeName: %s
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: looper
    image: skiff.local/testserver:latest
    imagePullPolicy: Never
    command: [/testserver, get, -n, "%d", -interval, 50ms, -timeout, 2s, -min, "0", "http://web/"]
`, clientNode.Name, n))
		poll(t, "looper runs", 60*time.Second, func() (bool, string) {
			phase := strings.TrimSpace(l.MustKubectl(t, k, "get", "-n", ns, "pod", "looper", "-o", "jsonpath={.status.phase}"))
			return phase != "Pending", phase
		})
		time.Sleep(2 * time.Second) // some requests before the kill
		if err := l.KillAgent(clientIdx); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		time.Sleep(time.Second)
		if err := l.StartAgent(clientIdx); err != nil {
			t.Fatal(err)
		}
		t.Logf("agent of %s killed with SIGKILL at %s and started again after %s", clientNode.Name, killed.UTC().Format(time.RFC3339Nano), time.Since(killed).Round(time.Millisecond))
		if phase := waitPhase(t, l, k, ns, "looper", 90*time.Second); phase != "Succeeded" {
			t.Fatalf("looper: phase %s, want Succeeded", phase)
		}
		logs := l.MustKubectl(t, k, "logs", "-n", ns, "looper")
		stamped := l.MustKubectl(t, k, "logs", "--timestamps", "-n", ns, "looper")
		s := parseGetSummary(t, logs)
		var fails []string
		for i, line := range lines(stamped) {
			if f := strings.Fields(line); len(f) > 1 && f[1] == "fail" {
				fails = append(fails, fmt.Sprintf("#%d %s", i+1, line))
			}
		}
		t.Logf("%d requests through the proxy restart: %s; failed: %d %q", n, s.line, len(fails), fails)
		if s.ok+s.fail != n || s.fail > 5 {
			t.Errorf("want at most 5 of %d requests failed, got %s", n, s.line)
		}
		all := lines(logs)
		for _, line := range all[max(0, len(all)-21) : len(all)-1] {
			if !strings.HasPrefix(line, "ok ") {
				t.Errorf("the last requests after the restart should succeed: %q", line)
			}
		}
	})
}

// serviceManifests are the objects of TestServiceNetworking; %s is the
// client pod's node.
const serviceManifests = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: skiff.local/testserver:latest
        imagePullPolicy: Never
        ports: [{containerPort: 8080, name: http}]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  type: ExternalName
  externalName: web.svcnet.svc.cluster.local
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 8080, name: http}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: db
        image: skiff.local/testserver:latest
        imagePullPolicy: Never
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: skiff.local/testserver:latest
    imagePullPolicy: Never
    command: [sleep, "3600"]
`

type webPod struct{ name, node, ip string }

// webPods lists the running web pods.
func webPods(t *testing.T, l *framework.Lab, k framework.Kubectl, ns string) []webPod {
	t.Helper()
	out := l.MustKubectl(t, k, "get", "pods", "-n", ns, "-l", "app=web", "--field-selector=status.phase=Running",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}`)
	var pods []webPod
	for _, line := range lines(out) {
		if f := strings.Fields(line); len(f) == 3 {
			pods = append(pods, webPod{f[0], f[1], f[2]})
		}
	}
	return pods
}

// getSummary is the last line of `testserver get`.
type getSummary struct {
	line     string
	ok, fail int
	pods     map[string]int
	kinds    map[string]int // error kinds of the failed requests
}

func parseGetSummary(t *testing.T, out string) getSummary {
	t.Helper()
	s := getSummary{pods: map[string]int{}, kinds: map[string]int{}}
	for _, line := range lines(out) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "fail" {
			s.kinds[f[1]]++
		}
		rest, ok := strings.CutPrefix(line, "summary ")
		if !ok {
			continue
		}
		s.line = rest
		for _, kv := range strings.Fields(rest) {
			key, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.Atoi(v)
			switch key {
			case "ok":
				s.ok = n
			case "fail":
				s.fail = n
			default:
				s.pods[key] = n
			}
		}
	}
	if s.line == "" {
		t.Fatalf("testserver get printed no summary:\n%s", out)
	}
	return s
}

// labLBPool is a LoadBalancer pool for a lab on subnet: its last 15
// addresses below the broadcast address, which are never nodes' (as skiff
// up's). A pod reaches those IPs through its own node's proxy, which
// answers them before any routing, so they need no route in the lab.
func labLBPool(t *testing.T, subnet string) string {
	t.Helper()
	p := netip.MustParsePrefix(subnet).Masked()
	if !p.Addr().Is4() {
		t.Fatalf("lab subnet %s: want IPv4", subnet)
	}
	b := p.Addr().As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bcast := n | (1<<(32-p.Bits()) - 1)
	ip := func(v uint32) string {
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	return ip(bcast-15) + "-" + ip(bcast-1)
}
