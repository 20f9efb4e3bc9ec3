package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/internal/containerd"
)

func (l *Lab) serverDir() string { return filepath.Join(l.cfg.Dir, "server") }

// adminKubeconfig is the server's own kubeconfig (server: the lab address
// of node 0), which the agents use.
func (l *Lab) adminKubeconfig() string { return filepath.Join(l.serverDir(), "admin.kubeconfig") }

func (l *Lab) startServer(ctx context.Context) error {
	st := l.State()
	n0 := st.Nodes[0]
	args := append([]string{"server", "--data-dir", l.serverDir(),
		"--listen", net.JoinHostPort(n0.IP, strconv.Itoa(APIPort)), "--disable-agent",
		"--cluster-cidr", st.ClusterCIDR, "--node-cidr-mask-size", "24", "--service-cidr", st.ServiceCIDR,
		"--log-level", l.cfg.LogLevel}, l.cfg.ServerArgs...)
	l.log.Info("starting skiff server", "netns", n0.Netns, "address", st.APIServer)
	p, err := l.start(n0.Netns, l.ServerLog(), args...)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.state.Server = p
	l.mu.Unlock()
	return l.save()
}

// startForwarder listens on the host's loopback and forwards to the API
// server: in this process, or, detached, in a `skiff lab forward` process
// that inherits the listening socket.
func (l *Lab) startForwarder() error {
	st := l.State()
	ns, target := netnsPath(st.Nodes[0].Netns), net.JoinHostPort(st.Nodes[0].IP, strconv.Itoa(APIPort))
	if !l.cfg.Detach {
		f, err := NewForwarder(l.cfg.Listen, ns, target)
		if err != nil {
			return err
		}
		l.mu.Lock()
		l.fwd = f
		l.state.Forward = f.Addr()
		l.mu.Unlock()
		return l.save()
	}
	ln, err := net.Listen("tcp", l.cfg.Listen)
	if err != nil {
		return fmt.Errorf("lab: forwarder: %w", err)
	}
	defer ln.Close()
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("lab: forwarder: %w", err)
	}
	defer lf.Close()
	p, err := l.startDetached(filepath.Join(l.cfg.Dir, "forward.log"), []*os.File{lf},
		"lab", "forward", "--listen-fd", "3", "--netns", ns, "--to", target)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.state.Forward = ln.Addr().String()
	l.state.Forwarder = p
	l.mu.Unlock()
	return l.save()
}

// waitServer waits for the server's kubeconfig and /readyz through the
// forwarder, then writes the host kubeconfig.
func (l *Lab) waitServer(ctx context.Context) error {
	st := l.State()
	deadline := time.Now().Add(WaitTimeout)
	var last error
	for time.Now().Before(deadline) {
		if !alive(st.Server) {
			return fmt.Errorf("lab: skiff server exited; see %s", st.Server.Log)
		}
		if last = l.writeHostKubeconfig(); last == nil {
			if last = readyz(ctx, st.Kubeconfig); last == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("lab: skiff server not ready after %s (see %s): %w", WaitTimeout, st.Server.Log, last)
}

// writeHostKubeconfig copies the server's admin kubeconfig with the
// forwarder's address as the server.
func (l *Lab) writeHostKubeconfig() error {
	st := l.State()
	cfg, err := clientcmd.LoadFromFile(l.adminKubeconfig())
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		c.Server = "https://" + st.Forward
	}
	return clientcmd.WriteToFile(*cfg, st.Kubeconfig)
}

func readyz(ctx context.Context, kubeconfig string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

func (l *Lab) startAgent(i int) error {
	st := l.State()
	n := st.Nodes[i]
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	args := append([]string{"agent", "--runtime=cri", "--kubeconfig", l.adminKubeconfig(),
		"--node-name", n.Name, "--node-ip", n.IP, "--data-dir", n.DataDir,
		"--pod-network", st.PodNetwork, "--cluster-cidr", st.ClusterCIDR, "--service-cidr", st.ServiceCIDR,
		"--log-level", l.cfg.LogLevel}, l.cfg.AgentArgs...)
	l.log.Info("starting skiff agent", "node", n.Name, "netns", n.Netns, "ip", n.IP)
	p, err := l.start(n.Netns, l.AgentLog(i), args...)
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.state.Nodes[i].Agent = p
	l.mu.Unlock()
	return l.save()
}

// Client returns an admin clientset through the forwarder.
func (l *Lab) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", l.Kubeconfig())
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	return kubernetes.NewForConfig(cfg)
}

// WaitNodesReady waits (up to timeout) until every lab node is Ready and
// has a pod CIDR, failing early when an agent exits.
func (l *Lab) WaitNodesReady(ctx context.Context, timeout time.Duration) error {
	client, err := l.Client()
	if err != nil {
		return err
	}
	st := l.State()
	deadline := time.Now().Add(timeout)
	var missing []string
	for {
		missing = missing[:0]
		for i, n := range st.Nodes {
			if !alive(n.Agent) {
				return fmt.Errorf("lab: the agent of %s exited; see %s", n.Name, l.AgentLog(i))
			}
			node, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil || node.Spec.PodCIDR == "" || !nodeReady(node) {
				missing = append(missing, n.Name)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: nodes not Ready after %s: %s", timeout, strings.Join(missing, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Namespaces returns the inodes of the lab's network namespaces: the
// nodes', the hub's and every pod's (bind-mounted below the lab's
// directory by containerd). With ProcessesIn, it finds what runs in the
// lab, also after Down.
func (l *Lab) Namespaces() map[uint64]bool {
	st := l.State()
	inodes := map[uint64]bool{}
	paths := []string{netnsPath(st.Hub)}
	for _, n := range st.Nodes {
		paths = append(paths, netnsPath(n.Netns))
	}
	for _, p := range append(paths, nsfsMountsUnder(st.Dir)...) {
		if ino, ok := nsInode(p); ok {
			inodes[ino] = true
		}
	}
	return inodes
}

// ProcessesIn returns the live processes (not zombies) whose network
// namespace is one of inodes.
func ProcessesIn(inodes map[uint64]bool) []int {
	var live []int
	for _, pid := range processesIn(inodes) {
		if alive(Process{PID: pid}) {
			live = append(live, pid)
		}
	}
	return live
}

// Down tears the lab down: it stops the server and the agents (SIGTERM,
// SIGKILL after a bound), kills what is left in the lab's network
// namespaces and in its pods' (containerd, shims, containers) and removes
// their cgroups, unmounts everything below the lab's directory, deletes
// the namespaces (with their veths, routes and nftables tables), drops the
// nodes' entries in containerd's registry and finally the state file. The
// directory with the data and logs stays. Down is idempotent.
func (l *Lab) Down(ctx context.Context) error {
	st := l.State()
	l.mu.Lock()
	fwd, extra := l.fwd, l.extra
	l.fwd, l.extra = nil, nil
	l.mu.Unlock()
	if fwd != nil {
		_ = fwd.Close()
	}
	for _, f := range extra {
		_ = f.Close()
	}
	var agents []Process
	for _, n := range st.Nodes {
		agents = append(agents, n.Agent)
	}
	// agents stop their containerd (its SIGTERM bound is 10s)
	stopAll(agents, 20*time.Second)
	fwds := []Process{st.Server, st.Forwarder}
	for _, f := range st.Forwards {
		fwds = append(fwds, f.Process)
	}
	stopAll(fwds, 20*time.Second)

	if n := killIn(l.Namespaces(), 10*time.Second); n > 0 {
		l.log.Info("killed processes left in the lab's namespaces", "count", n)
	}
	unmountUnder(st.Dir)
	// containerd's CRI parent cgroups, if no other containerd uses them
	if dirs, err := filepath.Glob("/sys/fs/cgroup/*/k8s.io"); err == nil {
		for _, d := range dirs {
			_ = os.Remove(d)
		}
	}
	var errs []error
	if err := deleteNetwork(ctx, st); err != nil {
		errs = append(errs, err)
	}
	for _, n := range st.Nodes {
		_ = os.Remove(filepath.Join(containerd.DefaultRegistryDir, n.Name+".sock"))
	}
	if left := mountsUnder(st.Dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("lab: %d mounts left below %s (first: %s)", len(left), st.Dir, left[0].path))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(st.Dir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}
