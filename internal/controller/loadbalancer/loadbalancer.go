// Package loadbalancer is skiff's built-in LoadBalancer controller: it
// gives every Service of type LoadBalancer an address from a configured
// pool in status.loadBalancer.ingress (the proxy on every node then
// answers on it like on a ClusterIP), leaves services pending with an
// Event when there is no pool or it is exhausted, and frees the address
// when the service is deleted or changes type.
package loadbalancer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/internal/controller/loop"
)

// Event reasons.
const (
	ReasonAllocated        = "IPAllocated"
	ReasonAllocationFailed = "AllocationFailed"
	ReasonNoPool           = "NoPoolConfigured"
)

// Config configures the controller.
type Config struct {
	Client  kubernetes.Interface
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	Logger   *slog.Logger
	// Pool is a comma-separated list of IPv4 CIDRs and first-last ranges;
	// empty leaves LoadBalancer services pending.
	Pool    string
	Workers int
}

// Controller is the LoadBalancer controller.
type Controller struct {
	cfg      Config
	client   kubernetes.Interface
	log      *slog.Logger
	loop     *loop.Loop
	services corelisters.ServiceLister
	synced   cache.InformerSynced

	mu      sync.Mutex
	pool    *Pool
	pending map[string]bool // services waiting for a free address
}

// New parses the pool, builds the controller and registers its handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	pool, err := ParsePool(cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("loadbalancer: %w", err)
	}
	inf := cfg.Factory.Core().V1().Services()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, services: inf.Lister(),
		synced: inf.Informer().HasSynced, pool: pool, pending: map[string]bool{}}
	c.loop = loop.New("loadbalancer", c, cfg.Logger)
	if _, err := inf.Informer().AddEventHandler(c.loop.Handler()); err != nil {
		return nil, fmt.Errorf("loadbalancer: service handler: %w", err)
	}
	return c, nil
}

// Run records the addresses services hold, then reconciles until ctx
// ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return fmt.Errorf("loadbalancer: caches did not sync: %w", context.Cause(ctx))
	}
	svcs, err := c.services.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("loadbalancer: list services: %w", err)
	}
	c.mu.Lock()
	for _, s := range svcs {
		if ours(s) {
			for _, ip := range ingressIPs(s) {
				c.pool.Occupy(s.Namespace+"/"+s.Name, ip)
			}
		}
	}
	c.mu.Unlock()
	workers := c.cfg.Workers
	if workers <= 0 {
		workers = 1
	}
	c.loop.Run(ctx, workers)
	return nil
}

// ours: a LoadBalancer service without a loadBalancerClass (a class
// names another implementation).
func ours(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.LoadBalancerClass == nil
}

func ingressIPs(s *corev1.Service) []netip.Addr {
	var out []netip.Addr
	for _, in := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// Reconcile gives the service named key an address, or takes it back.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, fmt.Errorf("service key %q: %w", key, err)
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.release(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if !ours(svc) {
		c.release(key)
		// a type change away from LoadBalancer: clear the addresses we gave
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) > 0 {
			return 0, c.setIngress(ctx, svc, nil)
		}
		return 0, nil
	}
	c.mu.Lock()
	if c.pool.Empty() {
		c.mu.Unlock()
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			c.cfg.Recorder.Event(svc, corev1.EventTypeWarning, ReasonNoPool, "no LoadBalancer IP pool configured")
		}
		return 0, nil
	}
	// keep an address it already has from the pool
	for _, ip := range ingressIPs(svc) {
		c.pool.Occupy(key, ip)
	}
	var want netip.Addr
	if svc.Spec.LoadBalancerIP != "" {
		want, _ = netip.ParseAddr(svc.Spec.LoadBalancerIP)
	}
	ip, err := c.pool.Allocate(key, want)
	if errors.Is(err, ErrExhausted) {
		first := !c.pending[key]
		c.pending[key] = true
		c.mu.Unlock()
		if first {
			c.cfg.Recorder.Eventf(svc, corev1.EventTypeWarning, ReasonAllocationFailed,
				"no free IP in the LoadBalancer pool %s; the service stays pending until one is released", c.cfg.Pool)
		}
		return 0, nil // retried when an address is released
	}
	delete(c.pending, key)
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	cur := ingressIPs(svc)
	if len(cur) == 1 && cur[0] == ip {
		return 0, nil
	}
	if err := c.setIngress(ctx, svc, []corev1.LoadBalancerIngress{{IP: ip.String(), IPMode: ptr(corev1.LoadBalancerIPModeVIP)}}); err != nil {
		return 0, err
	}
	c.cfg.Recorder.Eventf(svc, corev1.EventTypeNormal, ReasonAllocated, "LoadBalancer IP %s allocated from the pool", ip)
	return 0, nil
}

func ptr[T any](v T) *T { return &v }

func (c *Controller) setIngress(ctx context.Context, svc *corev1.Service, ingress []corev1.LoadBalancerIngress) error {
	s := svc.DeepCopy()
	s.Status.LoadBalancer.Ingress = ingress
	_, err := c.client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of service %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// release frees key's address and retries the services that wait for one.
func (c *Controller) release(key string) {
	c.mu.Lock()
	_, held := c.pool.Held(key)
	c.pool.Release(key)
	delete(c.pending, key)
	var retry []string
	if held {
		for k := range c.pending {
			retry = append(retry, k)
		}
	}
	c.mu.Unlock()
	for _, k := range retry {
		c.loop.Add(k)
	}
}
