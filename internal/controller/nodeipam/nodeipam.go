// Package nodeipam is the node IPAM controller: it gives every Node a
// spec.podCIDR (and podCIDRs) cut from the cluster CIDR, rebuilding which
// are taken from the nodes themselves when it starts, so that allocations
// are stable across restarts.
package nodeipam

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/internal/controller/loop"
)

// Defaults: k3s's cluster CIDR, a /24 (254 pods) per node.
const (
	DefaultClusterCIDR  = "10.42.0.0/16"
	DefaultNodeMaskSize = 24
)

// Config configures the controller.
type Config struct {
	// Client patches nodes.
	Client kubernetes.Interface
	// Factory provides the node informer; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// ClusterCIDR is cut into node CIDRs (default 10.42.0.0/16).
	ClusterCIDR string
	// NodeMaskSize is the prefix length of a node's CIDR (default 24).
	NodeMaskSize int
}

// Controller is the node IPAM controller.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	log    *slog.Logger
	loop   *loop.Loop
	nodes  corelisters.NodeLister
	alloc  *Allocator
	synced cache.InformerSynced
}

// New checks the CIDRs, builds the controller and registers its informer
// handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.NodeMaskSize == 0 {
		cfg.NodeMaskSize = DefaultNodeMaskSize
	}
	cluster, err := netip.ParsePrefix(cfg.ClusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("node ipam: cluster CIDR: %w", err)
	}
	alloc, err := NewAllocator(cluster, cfg.NodeMaskSize)
	if err != nil {
		return nil, fmt.Errorf("node ipam: %w", err)
	}
	inf := cfg.Factory.Core().V1().Nodes()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, nodes: inf.Lister(), alloc: alloc,
		synced: inf.Informer().HasSynced}
	c.loop = loop.New("nodeipam", c, cfg.Logger)
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, cur any) { c.loop.Enqueue(cur) },
		DeleteFunc: c.onDelete,
	}); err != nil {
		return nil, fmt.Errorf("node ipam: node handler: %w", err)
	}
	return c, nil
}

// Run waits for the node cache, records the CIDRs the nodes hold, then
// allocates until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return fmt.Errorf("node ipam: caches did not sync: %w", context.Cause(ctx))
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("node ipam: list nodes: %w", err)
	}
	for _, n := range nodes {
		c.occupy(n)
	}
	c.loop.Run(ctx, 1)
	return nil
}

// onDelete frees the node's CIDR at once and retries the nodes that wait.
func (c *Controller) onDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		c.alloc.Release(n.Name)
	}
	nodes, _ := c.nodes.List(labels.Everything())
	for _, n := range nodes {
		if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR == "" {
			c.loop.Add(n.Name)
		}
	}
}

// occupy records the CIDRs node holds; it reports whether it holds any.
func (c *Controller) occupy(n *corev1.Node) bool {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, s := range cidrs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		if !c.alloc.Occupy(n.Name, p) && c.alloc.cluster.Contains(p.Addr()) {
			c.log.Warn("node's pod CIDR overlaps another node's", "node", n.Name, "cidr", s)
		}
	}
	return len(cidrs) > 0
}

// Reconcile gives the node named key a pod CIDR if it has none.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	n, err := c.nodes.Get(key)
	if apierrors.IsNotFound(err) {
		c.alloc.Release(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if c.occupy(n) {
		return 0, nil
	}
	p, err := c.alloc.Allocate(n.Name)
	if errors.Is(err, ErrExhausted) {
		c.cfg.Recorder.Eventf(n, corev1.EventTypeWarning, "CIDRNotAvailable",
			"Node %s status is now: CIDRNotAvailable (cluster CIDR %s has no /%d left)", n.Name, c.cfg.ClusterCIDR, c.cfg.NodeMaskSize)
		// Retried when a node goes and frees one (onDelete).
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, p, p)
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		c.alloc.Release(n.Name)
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		c.cfg.Recorder.Eventf(n, corev1.EventTypeWarning, "CIDRAssignmentFailed", "Node %s: assigning pod CIDR %s: %v", n.Name, p, err)
		return 0, fmt.Errorf("set pod CIDR of node %s: %w", n.Name, err)
	}
	c.log.Debug("assigned pod CIDR", "node", n.Name, "cidr", p)
	return 0, nil
}
