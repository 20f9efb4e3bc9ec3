package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/agent"
)

// Config configures a set of simulated nodes.
type Config struct {
	// Client is shared by every node; bound its QPS for large N.
	Client kubernetes.Interface
	// Nodes is how many nodes to simulate.
	Nodes int
	// NamePrefix names the nodes <prefix>0 … <prefix>N-1; empty means "sim-".
	NamePrefix string
	// Capacity and Allocatable are each node's resources (required:
	// simulated nodes do not take the machine's).
	Capacity, Allocatable corev1.ResourceList
	// Labels, Taints and InstanceType are given to every node.
	Labels       map[string]string
	Taints       []corev1.Taint
	InstanceType string
	// Workers is the number of pods synced at once across all nodes;
	// 0 means 16.
	Workers int
	// RenewInterval, StatusInterval, StatusReportInterval and
	// LeaseDuration tune heartbeats (0: the agent's defaults).
	RenewInterval, StatusInterval, StatusReportInterval, LeaseDuration time.Duration
	// MetricsInterval is how often the nodes report their pods' simulated
	// usage to the metrics API, batched (0: the agent's default, 15s;
	// negative: never).
	MetricsInterval time.Duration
	// Logger receives the nodes' logs.
	Logger *slog.Logger
}

// Nodes runs simulated nodes on one shared pod watch.
type Nodes struct {
	cfg    Config
	src    *agent.PodSource
	agents []*agent.Agent
	ready  chan struct{}
}

// New builds the nodes' agents.
func New(cfg Config) (*Nodes, error) {
	if cfg.Client == nil {
		return nil, errors.New("sim: no API client")
	}
	if cfg.Nodes <= 0 {
		return nil, errors.New("sim: the number of nodes must be positive")
	}
	if cfg.Capacity == nil {
		return nil, errors.New("sim: no node capacity")
	}
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "sim-"
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RenewInterval <= 0 {
		cfg.RenewInterval = agent.DefaultRenewInterval
	}
	if cfg.MetricsInterval == 0 {
		cfg.MetricsInterval = agent.DefaultMetricsInterval
	}
	n := &Nodes{cfg: cfg, ready: make(chan struct{}),
		src: agent.NewPodSource(agent.PodSourceConfig{Client: cfg.Client, Workers: cfg.Workers, Logger: cfg.Logger})}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	for i := 0; i < cfg.Nodes; i++ {
		name := fmt.Sprintf("%s%d", cfg.NamePrefix, i)
		a, err := agent.New(agent.Config{
			NodeName: name, Client: cfg.Client, Pods: n.src,
			Runtime:  NewRuntime(NodeCIDR(i), nil),
			Capacity: cfg.Capacity, Allocatable: cfg.Allocatable,
			Labels: cfg.Labels, Taints: cfg.Taints, InstanceType: cfg.InstanceType,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: NodeIP(i).String()},
				{Type: corev1.NodeHostName, Address: name},
			},
			SystemInfo: corev1.NodeSystemInfo{
				MachineID: fmt.Sprintf("%032x", i+1), SystemUUID: fmt.Sprintf("00000000-0000-0000-0000-%012x", i+1),
				BootID: fmt.Sprintf("b0000000-0000-0000-0000-%012x", i+1), KernelVersion: strings.TrimSpace(string(kernel)),
				OSImage: "skiff simulated node", OperatingSystem: runtime.GOOS, Architecture: runtime.GOARCH,
				KubeletVersion: agent.KubeletVersion,
			},
			LeaseDuration: cfg.LeaseDuration, RenewInterval: cfg.RenewInterval,
			StatusInterval: cfg.StatusInterval, StatusReportInterval: cfg.StatusReportInterval,
			MetricsInterval: -1, // reported in batches by Run
			// spread the heartbeats of all nodes over one interval
			HeartbeatOffset: time.Duration(int64(cfg.RenewInterval) * int64(i) / int64(cfg.Nodes)),
			Logger:          cfg.Logger,
		})
		if err != nil {
			return nil, err
		}
		n.agents = append(n.agents, a)
	}
	return n, nil
}

// Names are the nodes' names.
func (n *Nodes) Names() []string {
	out := make([]string, len(n.agents))
	for i, a := range n.agents {
		out[i] = a.Name()
	}
	return out
}

// Ready is closed once every node is registered.
func (n *Nodes) Ready() <-chan struct{} { return n.ready }

// Run runs the shared pod watch and every node until ctx ends.
func (n *Nodes) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(n.agents))
	wg.Add(1)
	go func() { defer wg.Done(); n.src.Run(ctx) }()
	for _, a := range n.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(ctx); err != nil {
				errc <- fmt.Errorf("node %s: %w", a.Name(), err)
			}
		}()
	}
	go func() {
		for _, a := range n.agents {
			select {
			case <-a.Ready():
			case <-ctx.Done():
				return
			}
		}
		n.cfg.Logger.Info("simulated nodes registered", "nodes", len(n.agents))
		close(n.ready)
	}()
	if n.cfg.MetricsInterval > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); n.reportStats(ctx) }()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// statsBatch is how many nodes' usage goes in one report.
const statsBatch = 100

// reportStats sends every node's usage to the metrics API each
// MetricsInterval, statsBatch nodes a request, until ctx ends.
func (n *Nodes) reportStats(ctx context.Context) {
	select {
	case <-n.ready:
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(n.cfg.MetricsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		batch := map[string]*agent.NodeStats{}
		flush := func() {
			if err := agent.ReportStats(ctx, n.cfg.Client, batch); err != nil && ctx.Err() == nil {
				n.cfg.Logger.Warn("reporting usage to the metrics API failed", "err", err)
			}
			batch = map[string]*agent.NodeStats{}
		}
		for _, a := range n.agents {
			st, err := a.Stats(ctx)
			if err != nil {
				n.cfg.Logger.Warn("node usage", "node", a.Name(), "err", err)
				continue
			}
			if batch[a.Name()] = st; len(batch) == statsBatch {
				flush()
			}
		}
		if len(batch) > 0 {
			flush()
		}
	}
}
