// Package containerd runs and supervises a private containerd for one node:
// its own config.toml with the CRI plugin, root, state and socket under the
// node's data directory, the CNI plugins of Debian's containernetworking-plugins
// and skiff's own sandbox ("pause") image. It also imports OCI archives into
// that containerd's image store (see Importer).
package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Namespace is the containerd namespace the CRI plugin keeps its images,
// sandboxes and containers in.
const Namespace = "k8s.io"

// DefaultCNIBinDir is where Debian's containernetworking-plugins installs
// the CNI plugins.
const DefaultCNIBinDir = "/usr/lib/cni"

// Config configures a supervised containerd.
type Config struct {
	// Dir holds everything of this containerd: config.toml, root, state,
	// the socket and containerd.log (required).
	Dir string
	// Binary is the containerd executable; empty means "containerd" on PATH.
	Binary string
	// SandboxImage is the CRI plugin's sandbox_image (required): it must be
	// imported before the first pod starts, as no registry is reachable.
	SandboxImage string
	// CNIBinDir holds the CNI plugins; empty means DefaultCNIBinDir.
	CNIBinDir string
	// CNIConfDir is where the CRI plugin reads the pod network's conflist;
	// empty means Dir/net.d.
	CNIConfDir string
	// InsecureRegistries are registries ("HOST:PORT") containerd pulls
	// from over plain HTTP (see AddInsecureRegistry).
	InsecureRegistries []string
	// NetNS, when set, is the path of a network namespace containerd runs
	// in (/run/netns/NAME): the pods' bridge and veths are made there.
	NetNS string
	// StopTimeout bounds how long Run waits for containerd to exit after
	// SIGTERM before it kills it; 0 means 10 s.
	StopTimeout time.Duration
	// Logger receives the supervisor's logs; containerd's own go to
	// Dir/containerd.log.
	Logger *slog.Logger
}

// Containerd is one supervised containerd.
type Containerd struct {
	cfg       Config
	log       *slog.Logger
	ready     chan struct{}
	readyOnce sync.Once
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Containerd, error) {
	if cfg.Dir == "" {
		return nil, errors.New("containerd: no directory")
	}
	if cfg.SandboxImage == "" {
		return nil, errors.New("containerd: no sandbox image")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	cfg.Dir = dir
	if cfg.Binary == "" {
		cfg.Binary = "containerd"
	}
	if cfg.CNIBinDir == "" {
		cfg.CNIBinDir = DefaultCNIBinDir
	}
	if cfg.CNIConfDir == "" {
		cfg.CNIConfDir = filepath.Join(dir, "net.d")
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// unix socket paths are limited to 107 bytes
	if n := len(socketPath(dir)); n > 100 {
		return nil, fmt.Errorf("containerd: socket path %s is %d bytes, too long for a unix socket; use a shorter directory", socketPath(dir), n)
	}
	return &Containerd{cfg: cfg, log: cfg.Logger.With("component", "containerd"), ready: make(chan struct{})}, nil
}

func socketPath(dir string) string { return filepath.Join(dir, "containerd.sock") }

// Socket is the path of containerd's gRPC socket.
func (c *Containerd) Socket() string { return socketPath(c.cfg.Dir) }

// Endpoint is the CRI endpoint of containerd ("unix:///…/containerd.sock").
func (c *Containerd) Endpoint() string { return "unix://" + c.Socket() }

// CNIConfDir is the directory the CRI plugin reads the pod network from.
func (c *Containerd) CNIConfDir() string { return c.cfg.CNIConfDir }

// Ready is closed once containerd accepts connections on its socket.
func (c *Containerd) Ready() <-chan struct{} { return c.ready }

// Config renders containerd's config.toml.
func (c *Containerd) Config() string {
	d := c.cfg.Dir
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	return strings.Join([]string{
		"# written by skiff; changes are overwritten when the agent starts",
		"version = 2",
		"root = " + q(filepath.Join(d, "root")),
		"state = " + q(filepath.Join(d, "state")),
		"disabled_plugins = [\"io.containerd.snapshotter.v1.aufs\", \"io.containerd.snapshotter.v1.btrfs\", \"io.containerd.snapshotter.v1.devmapper\", \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.tracing.processor.v1.otlp\"]",
		"",
		"[grpc]",
		"  address = " + q(c.Socket()),
		"",
		"[ttrpc]",
		"  address = " + q(c.Socket()+".ttrpc"),
		"",
		"[debug]",
		"  address = \"\"",
		"",
		"[metrics]",
		"  address = \"\"",
		"",
		"[plugins]",
		"  [plugins.\"io.containerd.internal.v1.opt\"]",
		"    path = " + q(filepath.Join(d, "opt")),
		"  [plugins.\"io.containerd.grpc.v1.cri\"]",
		"    sandbox_image = " + q(c.cfg.SandboxImage),
		"    enable_selinux = false",
		"    disable_apparmor = true",
		// containers score no lower than containerd: lowering
		// oom_score_adj is refused in some VMs and user namespaces
		"    restrict_oom_score_adj = true",
		// pods' network namespaces live under the state dir, not /run/netns
		"    netns_mounts_under_state_dir = true",
		"    max_container_log_line_size = 16384",
		// exec, attach and port-forward: the agent's streaming endpoint
		// proxies to this server on the loopback of containerd's network
		// namespace (a free port each start)
		"    stream_server_address = \"127.0.0.1\"",
		"    stream_server_port = \"0\"",
		"    [plugins.\"io.containerd.grpc.v1.cri\".containerd]",
		"      snapshotter = \"overlayfs\"",
		"      default_runtime_name = \"runc\"",
		"      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]",
		"        runtime_type = \"io.containerd.runc.v2\"",
		"        [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]",
		"          Root = " + q(filepath.Join(d, "runc")),
		"          SystemdCgroup = false",
		"    [plugins.\"io.containerd.grpc.v1.cri\".cni]",
		"      bin_dir = " + q(c.cfg.CNIBinDir),
		"      conf_dir = " + q(c.cfg.CNIConfDir),
		"      max_conf_num = 1",
		// registries' hosts.toml files (plain HTTP, mirrors): hosts.go
		"    [plugins.\"io.containerd.grpc.v1.cri\".registry]",
		"      config_path = " + q(c.RegistryConfigDir()),
		"",
	}, "\n")
}

// Run writes the config, starts containerd and keeps it running until ctx
// ends, restarting it with back-off when it exits; then it stops it
// (SIGTERM, SIGKILL after StopTimeout). Containers keep running across a
// stop: their shims outlive containerd, as they do for the kubelet.
func (c *Containerd) Run(ctx context.Context) error {
	for _, d := range []string{c.cfg.Dir, c.cfg.CNIConfDir, filepath.Join(c.cfg.Dir, "runc")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
	}
	conf := filepath.Join(c.cfg.Dir, "config.toml")
	if err := os.WriteFile(conf, []byte(c.Config()), 0o600); err != nil {
		return fmt.Errorf("containerd: write config: %w", err)
	}
	for _, host := range c.cfg.InsecureRegistries {
		if err := c.AddInsecureRegistry(host); err != nil {
			return fmt.Errorf("containerd: %w", err)
		}
	}
	if _, err := exec.LookPath(c.cfg.Binary); err != nil {
		return fmt.Errorf("containerd: %w (apt-get install containerd runc containernetworking-plugins)", err)
	}
	c.stopLeftover(conf)
	backoff := time.Second
	for {
		started := time.Now()
		err := c.runOnce(ctx, conf)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		c.log.Error("containerd exited; restarting", "err", err, "after", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// runOnce runs containerd until it exits or ctx ends.
func (c *Containerd) runOnce(ctx context.Context, conf string) error {
	logPath := filepath.Join(c.cfg.Dir, "containerd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	defer logf.Close()
	_ = os.Remove(c.Socket())
	args := []string{c.cfg.Binary, "--config", conf}
	if c.cfg.NetNS != "" {
		args = append([]string{"nsenter", "--net=" + c.cfg.NetNS, "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...) //nolint:gosec // the binary and its config are ours
	cmd.Stdout, cmd.Stderr = logf, logf
	// its own process group, so that a terminal's ^C reaches the agent only
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	pidFile := filepath.Join(c.cfg.Dir, "containerd.pid")
	_ = os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	defer os.Remove(pidFile)
	c.log.Info("containerd started", "pid", cmd.Process.Pid, "socket", c.Socket(), "log", logPath)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	go c.waitSocket(ctx, exited)
	select {
	case err := <-exited:
		return fmt.Errorf("containerd exited (see %s): %w", logPath, err)
	case <-ctx.Done():
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(c.cfg.StopTimeout):
		c.log.Warn("containerd did not stop; killing it", "pid", cmd.Process.Pid)
		_ = cmd.Process.Kill()
		<-exited
	}
	c.log.Info("containerd stopped")
	return nil
}

// waitSocket closes ready once the socket accepts connections.
func (c *Containerd) waitSocket(ctx context.Context, exited <-chan error) {
	for {
		conn, err := net.DialTimeout("unix", c.Socket(), time.Second)
		if err == nil {
			conn.Close()
			c.readyOnce.Do(func() { close(c.ready) })
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if len(exited) > 0 {
			return
		}
	}
}

// stopLeftover stops a containerd of this directory that a previous agent
// left running (the agent was killed): two containerds cannot share a root.
func (c *Containerd) stopLeftover(conf string) {
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, "containerd.pid"))
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), conf) {
		return
	}
	c.log.Info("stopping the containerd a previous agent left running", "pid", pid)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(c.cfg.StopTimeout)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
