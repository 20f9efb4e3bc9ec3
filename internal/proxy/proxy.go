// Package proxy is skiff's service proxy: it watches Services and
// EndpointSlices and programs the node's nftables tables `ip skiff-proxy*`
// so that ClusterIPs, NodePorts and LoadBalancer IPs reach the services'
// endpoints (see docs/architecture.md, "Service proxy").
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Defaults.
const (
	DefaultMinSyncInterval = time.Second
	DefaultResyncInterval  = 10 * time.Minute
)

// Config configures a Proxy.
type Config struct {
	Client kubernetes.Interface
	// NodeName is this node, for the Local traffic policies.
	NodeName string
	// MinSyncInterval is the least time between two transactions; changes
	// that arrive meanwhile are batched into the next one (default 1s).
	MinSyncInterval time.Duration
	// ResyncInterval is how often the whole table is reconciled even
	// without changes (default 10m).
	ResyncInterval time.Duration
	// NetNSFD, when set, is an open network namespace to program instead
	// of the caller's (tests, benchmarks).
	NetNSFD int
	Logger  *slog.Logger
}

// Proxy keeps the node's table in step with the API.
type Proxy struct {
	cfg     Config
	log     *slog.Logger
	applier *Applier

	mu    sync.Mutex
	dirty map[string]bool
	kick  chan struct{}

	model     Model // only the sync loop touches it
	ready     chan struct{}
	readyOnce sync.Once
}

// New checks cfg; nothing runs until Run.
func New(cfg Config) (*Proxy, error) {
	if cfg.Client == nil {
		return nil, errors.New("proxy: no client")
	}
	if cfg.NodeName == "" {
		return nil, errors.New("proxy: no node name")
	}
	if cfg.MinSyncInterval == 0 {
		cfg.MinSyncInterval = DefaultMinSyncInterval
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = DefaultResyncInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Proxy{cfg: cfg, log: cfg.Logger, applier: NewApplier(cfg.NetNSFD),
		dirty: map[string]bool{}, kick: make(chan struct{}, 1), model: Model{}, ready: make(chan struct{})}, nil
}

// Ready is closed after the first successful sync.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Cleanup removes the proxy's tables; call it after Run returned, when the
// proxy is being removed from the node.
func (p *Proxy) Cleanup() error { return p.applier.Cleanup() }

func (p *Proxy) mark(key string) {
	p.mu.Lock()
	p.dirty[key] = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run watches the API and syncs the table until ctx ends. The table is
// left in place when Run returns (restarts keep established flows and
// the rules); Cleanup removes it.
func (p *Proxy) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(p.cfg.Client, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	onService := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			p.mark(k)
		}
	}
	onSlice := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
			p.mark(s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName])
		}
	}
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		fn  func(any)
	}{{svcInf.Informer(), onService}, {sliceInf.Informer(), onSlice}} {
		if _, err := h.inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: h.fn, UpdateFunc: func(_, o any) { h.fn(o) }, DeleteFunc: h.fn,
		}); err != nil {
			return fmt.Errorf("proxy: event handler: %w", err)
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("proxy: cache of %v did not sync", typ)
		}
	}
	return p.loop(ctx, svcInf.Lister(), sliceInf.Lister())
}

func (p *Proxy) loop(ctx context.Context, svcs corelisters.ServiceLister, sl discoverylisters.EndpointSliceLister) error {
	resync := time.NewTicker(p.cfg.ResyncInterval)
	defer resync.Stop()
	last := time.Time{}
	retry := time.Duration(0)
	full := true
	for {
		if wait := time.Until(last.Add(p.cfg.MinSyncInterval)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		p.mu.Lock()
		dirty := p.dirty
		p.dirty = map[string]bool{}
		p.mu.Unlock()
		if full {
			// rebuild every service from the caches
			dirty = map[string]bool{}
			all, err := svcs.List(labels.Everything())
			if err != nil {
				return fmt.Errorf("proxy: list services: %w", err)
			}
			for _, s := range all {
				dirty[s.Namespace+"/"+s.Name] = true
			}
			for k := range p.model {
				dirty[k] = true
			}
			p.applier.Resync()
		}
		if len(dirty) > 0 || full {
			start := time.Now()
			for k := range dirty {
				s, err := p.buildService(k, svcs, sl)
				if err != nil {
					return err
				}
				if s == nil {
					delete(p.model, k)
				} else {
					p.model[k] = s
				}
			}
			if err := p.applier.Apply(p.model); err != nil {
				retry = min(max(2*retry, time.Second), time.Minute)
				p.log.Error("proxy sync failed; full resync next", "err", err, "retry", retry)
				full = true
				last = time.Now().Add(retry - p.cfg.MinSyncInterval)
				continue
			}
			retry = 0
			p.log.Debug("proxy synced", "services", len(dirty), "full", full, "took", time.Since(start))
			full = false
			p.readyOnce.Do(func() { close(p.ready) })
		}
		last = time.Now()
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-resync.C:
			full = true
		}
	}
}

// buildService computes one service's model entry from the caches; nil
// when it is gone or programs nothing.
func (p *Proxy) buildService(key string, svcs corelisters.ServiceLister, sl discoverylisters.EndpointSliceLister) (*Service, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, fmt.Errorf("proxy: service key %q: %w", key, err)
	}
	svc, err := svcs.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("proxy: get service %s: %w", key, err)
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
	slices, err := sl.EndpointSlices(ns).List(sel)
	if err != nil {
		return nil, fmt.Errorf("proxy: list endpoint slices: %w", err)
	}
	return BuildService(svc, slices, p.cfg.NodeName), nil
}
