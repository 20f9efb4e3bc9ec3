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

// startForwarder listens on the host's loopback and writes the host
// kubeconfig once the server has written its own.
func (l *Lab) startForwarder() error {
	st := l.State()
	f, err := NewForwarder(l.cfg.Listen, netnsPath(st.Nodes[0].Netns), net.JoinHostPort(st.Nodes[0].IP, strconv.Itoa(APIPort)))
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.fwd = f
	l.state.Forward = f.Addr()
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
		"--pod-network", "host-gw", "--cluster-cidr", st.ClusterCIDR, "--service-cidr", st.ServiceCIDR,
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
	fwd := l.fwd
	l.fwd = nil
	l.mu.Unlock()
	if fwd != nil {
		_ = fwd.Close()
	}
	ps := []Process{st.Server}
	for _, n := range st.Nodes {
		ps = append(ps, n.Agent)
	}
	// agents stop their containerd (its SIGTERM bound is 10s)
	stopAll(ps[1:], 20*time.Second)
	stopAll(ps[:1], 20*time.Second)

	inodes := map[uint64]bool{}
	for _, n := range st.Nodes {
		if ino, ok := nsInode(netnsPath(n.Netns)); ok {
			inodes[ino] = true
		}
	}
	if ino, ok := nsInode(netnsPath(st.Hub)); ok {
		inodes[ino] = true
	}
	for _, p := range nsfsMountsUnder(st.Dir) {
		if ino, ok := nsInode(p); ok {
			inodes[ino] = true
		}
	}
	if n := killIn(inodes, 10*time.Second); n > 0 {
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
