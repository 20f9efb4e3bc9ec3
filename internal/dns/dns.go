// Package dns is the cluster DNS server: it answers for the cluster
// domain from Services, EndpointSlices and Pods (watched through
// informers) the way CoreDNS's kubernetes plugin does, and forwards every
// other name to the upstream resolvers of a resolv.conf.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Defaults.
const (
	DefaultListen     = "127.0.0.1:10053"
	DefaultDomain     = "cluster.local"
	DefaultResolvConf = "/etc/resolv.conf"
	// DefaultTTL is the TTL of cluster records (CoreDNS's default).
	DefaultTTL = 5
)

// Config configures the DNS server.
type Config struct {
	// Client reads Services, EndpointSlices and Pods.
	Client kubernetes.Interface
	// Listen is the UDP and TCP address (default 127.0.0.1:10053; port 0
	// picks a free port, the same for both).
	Listen string
	// Domain is the cluster domain (default cluster.local).
	Domain string
	// ResolvConf names the upstream resolvers (default /etc/resolv.conf).
	ResolvConf string
	// Upstreams, when set, are the upstream resolvers (host:port) instead
	// of ResolvConf's.
	Upstreams []string
	// TTL of cluster records in seconds (default 5).
	TTL uint32
	// ForwardTimeout bounds one upstream exchange (default 2s).
	ForwardTimeout time.Duration
	// Logger receives the server's logs.
	Logger *slog.Logger
}

// Server is the cluster DNS server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	zone      string // the cluster domain, fully qualified, lower case
	upstreams []string
	factory   informers.SharedInformerFactory
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	pods      cache.Indexer
	ready     chan struct{}

	mu   sync.Mutex
	addr string
}

const podIPIndex = "podIP"

// New builds a server; Run serves it.
func New(cfg Config) (*Server, error) {
	if cfg.Client == nil {
		return nil, errors.New("dns: no client")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Domain == "" {
		cfg.Domain = DefaultDomain
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, ok := dns.IsDomainName(cfg.Domain); !ok {
		return nil, fmt.Errorf("dns: invalid cluster domain %q", cfg.Domain)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, zone: dns.CanonicalName(cfg.Domain), upstreams: cfg.Upstreams,
		ready: make(chan struct{})}
	if s.upstreams == nil {
		ups, err := ReadResolvConf(cfg.ResolvConf)
		if err != nil {
			return nil, err
		}
		s.upstreams = ups
	}
	s.factory = informers.NewSharedInformerFactory(cfg.Client, 0)
	s.services = s.factory.Core().V1().Services().Lister()
	s.slices = s.factory.Discovery().V1().EndpointSlices().Lister()
	podInf := s.factory.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(cache.Indexers{podIPIndex: podIPs}); err != nil {
		return nil, fmt.Errorf("dns: pod index: %w", err)
	}
	s.pods = podInf.GetIndexer()
	return s, nil
}

func podIPs(obj any) ([]string, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ip := range pod.Status.PodIPs {
		out = append(out, pod.Namespace+"/"+ip.IP)
	}
	if len(out) == 0 && pod.Status.PodIP != "" {
		out = append(out, pod.Namespace+"/"+pod.Status.PodIP)
	}
	return out, nil
}

// ReadResolvConf returns the name servers (host:port) of a resolv.conf.
func ReadResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dns: read upstream resolvers from %s: %w", path, err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, srv := range cc.Servers {
		out = append(out, net.JoinHostPort(srv, cc.Port))
	}
	return out, nil
}

// Ready is closed once the server listens and its caches are filled.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the server listens on (valid after Ready).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	pc, ln, err := listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.addr = pc.LocalAddr().String()
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.factory.Start(ctx.Done())
	defer s.factory.Shutdown()
	udp := &dns.Server{PacketConn: pc, Net: "udp", Handler: s}
	tcp := &dns.Server{Listener: ln, Net: "tcp", Handler: s}
	errc := make(chan error, 2)
	for _, srv := range []*dns.Server{udp, tcp} {
		go func() { errc <- srv.ActivateAndServe() }()
	}
	go func() {
		for typ, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
			if !ok {
				s.log.Debug("cache not synced", "type", typ)
				return
			}
		}
		s.log.Info("cluster DNS is serving", "addr", s.Addr(), "domain", s.cfg.Domain, "upstreams", s.upstreams)
		close(s.ready)
	}()
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("dns: serve: %w", runErr)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	return runErr
}

// listen opens UDP and TCP on the same address; with port 0 it retries
// until both get the same free port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dns: listen on udp %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" || attempt >= 20 {
			return nil, nil, fmt.Errorf("dns: listen on tcp %s: %w", addr, err)
		}
	}
}
