// Package lab runs a multi-node skiff cluster on one machine: every node in
// a network namespace of its own (skiff-LAB-nI), the nodes joined by a
// bridge in a "hub" namespace (skiff-LAB-hub) through veth pairs, lab
// addresses from a private range. `skiff server` runs in node 0's
// namespace, every node runs `skiff agent --runtime=cri` (its own
// containerd, data dir and host-gw pod routes) in its namespace, and the
// host reaches the API server only through a TCP forwarder on 127.0.0.1
// that dials into node 0's namespace. Nothing is added to the host's
// network namespace besides that loopback listener, so no lab or pod
// address is routable off the machine.
//
// The lab's state (namespaces, processes, directories) is kept in
// DIR/lab.json, so that another process can tear it down (Load, Down).
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
)

// Defaults of Config.
const (
	DefaultSubnet      = "172.31.0.0/24"
	DefaultClusterCIDR = "10.244.0.0/16"
	DefaultServiceCIDR = "10.43.0.0/16"
	// APIPort is the API server's port on node 0's lab address.
	APIPort = 6443
	// StateFile is the lab's state file in its directory.
	StateFile = "lab.json"
	// firstHost is the host part of node 0's address in the subnet.
	firstHost = 10
)

// Config configures a lab.
type Config struct {
	// Name names the lab's namespaces (skiff-NAME-n0 …) and, by default,
	// its nodes (NAME-0 …): lower-case letters, digits and dashes, at most
	// 20 characters (required).
	Name string
	// Dir holds the lab's state, logs and every node's data (required).
	Dir string
	// Binary is the skiff executable (required).
	Binary string
	// Nodes is the number of nodes (default 1).
	Nodes int
	// NodePrefix names the nodes PREFIX0 …; empty means "NAME-".
	NodePrefix string
	// Subnet is the lab network, an IPv4 /24 or larger; node I gets host
	// 10+I (default DefaultSubnet).
	Subnet string
	// ClusterCIDR and ServiceCIDR are the cluster's pod and service
	// ranges (defaults DefaultClusterCIDR, DefaultServiceCIDR).
	ClusterCIDR, ServiceCIDR string
	// PodNetwork is the agents' --pod-network: host-gw (default) or vxlan.
	PodNetwork string
	// Listen is the host address of the API forwarder (default
	// 127.0.0.1:0, a free port); it must be a loopback address.
	Listen string
	// Detach starts the server and agents in sessions of their own that
	// outlive this process (for `skiff up`); otherwise they are killed
	// when this process dies.
	Detach bool
	// ServerArgs and AgentArgs are appended to the server's and every
	// agent's command line.
	ServerArgs, AgentArgs []string
	// LogLevel is the components' --log-level (default info).
	LogLevel string
	// Logger receives the lab's progress.
	Logger *slog.Logger
}

// State is what a later process needs to find and tear down a lab.
type State struct {
	Name        string  `json:"name"`
	Dir         string  `json:"dir"`
	Subnet      string  `json:"subnet"`
	ClusterCIDR string  `json:"clusterCIDR"`
	ServiceCIDR string  `json:"serviceCIDR"`
	PodNetwork  string  `json:"podNetwork"`
	Hub         string  `json:"hubNetns"`
	Nodes       []Node  `json:"nodes"`
	Server      Process `json:"server"`
	// APIServer is the API server's URL inside the lab.
	APIServer string `json:"apiServer"`
	// Forward is the host address of the API forwarder.
	Forward string `json:"forward,omitempty"`
	// Forwarder is the forwarder's process when the lab runs detached
	// (`skiff lab forward`); otherwise it runs in the process that made
	// the lab and ends with it.
	Forwarder Process `json:"forwarder,omitempty"`
	// Kubeconfig is the admin kubeconfig for the host (server
	// https://FORWARD).
	Kubeconfig string `json:"kubeconfig"`
	// Forwards are further forwarders from the host's loopback into node
	// 0's namespace (Forward), e.g. `skiff up`'s demo URL.
	Forwards []Forward `json:"forwards,omitempty"`
	// Binary and Detached are the lab's skiff executable and mode, so that
	// a Lab loaded from the state can add forwarders.
	Binary   string `json:"binary,omitempty"`
	Detached bool   `json:"detached,omitempty"`
}

// Node is one lab node.
type Node struct {
	Name    string  `json:"name"`
	Netns   string  `json:"netns"`
	IP      string  `json:"ip"`
	DataDir string  `json:"dataDir"`
	Agent   Process `json:"agent"`
}

// Process is a process the lab started.
type Process struct {
	PID int `json:"pid,omitempty"`
	// StartTime is the process's start time in clock ticks since boot
	// (/proc/PID/stat), so that a reused PID is never signalled.
	StartTime uint64 `json:"startTime,omitempty"`
	Log       string `json:"log,omitempty"`
}

// Lab is a running (or torn down) lab.
type Lab struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	state State
	fwd   *Forwarder
	extra map[string]*Forwarder // in-process Forwards, by name
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$`)

// New checks cfg and fills its defaults; it creates nothing.
func New(cfg Config) (*Lab, error) {
	if !nameRE.MatchString(cfg.Name) {
		return nil, fmt.Errorf("lab: name %q: use 1-20 lower-case letters, digits and dashes", cfg.Name)
	}
	if cfg.Dir == "" || cfg.Binary == "" {
		return nil, errors.New("lab: a directory and the skiff binary are required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	cfg.Dir = dir
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1
	}
	if cfg.NodePrefix == "" {
		cfg.NodePrefix = cfg.Name + "-"
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	switch cfg.PodNetwork {
	case "":
		cfg.PodNetwork = "host-gw"
	case "host-gw", "vxlan":
	default:
		return nil, fmt.Errorf("lab: pod network %q: use host-gw or vxlan", cfg.PodNetwork)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if host, _, err := net.SplitHostPort(cfg.Listen); err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, fmt.Errorf("lab: listen %q: want a loopback host:port", cfg.Listen)
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	subnet, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil || !subnet.Addr().Is4() || subnet.Bits() > 24 {
		return nil, fmt.Errorf("lab: subnet %q: want an IPv4 /24 or larger", cfg.Subnet)
	}
	subnet = subnet.Masked()
	if cfg.Nodes > 200 {
		return nil, fmt.Errorf("lab: %d nodes: at most 200", cfg.Nodes)
	}
	for _, c := range []string{cfg.ClusterCIDR, cfg.ServiceCIDR} {
		p, err := netip.ParsePrefix(c)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("lab: %q: want an IPv4 CIDR", c)
		}
		if p.Overlaps(subnet) {
			return nil, fmt.Errorf("lab: %s overlaps the lab subnet %s", c, subnet)
		}
	}
	l := &Lab{cfg: cfg, log: cfg.Logger.With("lab", cfg.Name)}
	st := State{Name: cfg.Name, Dir: dir, Subnet: subnet.String(), ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR,
		PodNetwork: cfg.PodNetwork, Hub: netnsName(cfg.Name, "hub"), Kubeconfig: filepath.Join(dir, "kubeconfig"), Binary: cfg.Binary, Detached: cfg.Detach}
	ip := subnet.Addr()
	for range firstHost {
		ip = ip.Next()
	}
	for i := range cfg.Nodes {
		st.Nodes = append(st.Nodes, Node{Name: cfg.NodePrefix + strconv.Itoa(i), Netns: netnsName(cfg.Name, "n"+strconv.Itoa(i)),
			IP: ip.String(), DataDir: filepath.Join(dir, "nodes", strconv.Itoa(i))})
		ip = ip.Next()
	}
	st.APIServer = "https://" + net.JoinHostPort(st.Nodes[0].IP, strconv.Itoa(APIPort))
	l.state = st
	return l, nil
}

func netnsName(lab, suffix string) string { return "skiff-" + lab + "-" + suffix }

// State returns a copy of the lab's state.
func (l *Lab) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state
	st.Nodes = append([]Node(nil), st.Nodes...)
	st.Forwards = append([]Forward(nil), st.Forwards...)
	return st
}

// Kubeconfig is the host's admin kubeconfig (server https://127.0.0.1:PORT).
func (l *Lab) Kubeconfig() string { return l.State().Kubeconfig }

// Up creates the lab's network, starts the server in node 0's namespace,
// the API forwarder on the host's loopback and an agent in every node's
// namespace. It does not wait for the nodes (see WaitNodesReady). On
// error, what was made is torn down.
func (l *Lab) Up(ctx context.Context) (err error) {
	if err := os.MkdirAll(l.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if _, err := os.Stat(filepath.Join(l.cfg.Dir, StateFile)); err == nil {
		return fmt.Errorf("lab: %s already holds a lab (%s); tear it down first", l.cfg.Dir, StateFile)
	}
	defer func() {
		if err != nil {
			if derr := l.Down(context.Background()); derr != nil {
				l.log.Warn("tearing down the half-made lab", "err", derr)
			}
		}
	}()
	// the state goes first, so that a crash from here on can be torn down
	if err := l.save(); err != nil {
		return err
	}
	l.log.Info("creating the lab network", "nodes", len(l.state.Nodes), "subnet", l.state.Subnet)
	if err := createNetwork(ctx, l.State()); err != nil {
		return err
	}
	if err := l.startServer(ctx); err != nil {
		return err
	}
	if err := l.startForwarder(); err != nil {
		return err
	}
	if err := l.waitServer(ctx); err != nil {
		return err
	}
	for i := range l.state.Nodes {
		if err := l.startAgent(i); err != nil {
			return err
		}
	}
	return l.save()
}

// save writes the state file atomically.
func (l *Lab) save() error {
	st := l.State()
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(st.Dir, StateFile)
	if err := os.WriteFile(p+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("lab: write state: %w", err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		return fmt.Errorf("lab: write state: %w", err)
	}
	return nil
}

// Load reads the state of the lab in dir, for Down.
func Load(dir string, logger *slog.Logger) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, fmt.Errorf("lab: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("lab: %s: %w", filepath.Join(dir, StateFile), err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Lab{cfg: Config{Name: st.Name, Dir: st.Dir, Binary: st.Binary, Detach: st.Detached}, log: logger.With("lab", st.Name), state: st}, nil
}

// ServerLog and AgentLog are the paths of the components' logs.
func (l *Lab) ServerLog() string { return filepath.Join(l.cfg.Dir, "server.log") }

// AgentLog is node i's agent log.
func (l *Lab) AgentLog(i int) string {
	return filepath.Join(l.cfg.Dir, "agent-"+strconv.Itoa(i)+".log")
}

// Deps are the programs a lab runs besides skiff.
var Deps = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "bridge", "nsenter",
	filepath.Join(containerd.DefaultCNIBinDir, "bridge"), filepath.Join(containerd.DefaultCNIBinDir, "host-local"),
	image.DefaultBusybox}

// Missing returns why this machine cannot run a lab, or "" if it can.
func Missing() string {
	if os.Geteuid() != 0 {
		return "a lab needs root (network namespaces, containerd)"
	}
	for _, bin := range Deps {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Sprintf("a lab needs %s (run 'make deps' or hack/install-deps.sh, which install Debian's containerd, runc, containernetworking-plugins, iproute2 and busybox-static)", bin)
		}
	}
	return ""
}

// WaitTimeout bounds the lab's waits for a component.
const WaitTimeout = 90 * time.Second
