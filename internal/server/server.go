// Package server wires skiff's control plane: certificates, the etcd
// store, the API server and the control loops that run beside it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/agent/stream"
	"github.com/skiff-sh/skiff/internal/apiserver"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/builtin"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/core"
	"github.com/skiff-sh/skiff/internal/controller/manager"
	"github.com/skiff-sh/skiff/internal/pki"
	"github.com/skiff-sh/skiff/internal/scheduler"
	"github.com/skiff-sh/skiff/internal/store"
)

// KubernetesVersion is the Kubernetes API version skiff serves.
const KubernetesVersion = "v1.33.0"

// Config configures a control plane.
type Config struct {
	// DataDir holds certificates, the admin kubeconfig and embedded etcd.
	DataDir string
	// Listen is the API server's HTTPS address.
	Listen string
	// Hosts are extra names and IPs for the serving certificate.
	Hosts []string
	// EtcdEndpoints selects an external etcd; empty means embedded.
	EtcdEndpoints []string
	// EtcdCAFile, EtcdCertFile and EtcdKeyFile configure TLS to etcd.
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// DisableScheduler turns off the in-process scheduler (run
	// `skiff scheduler` elsewhere instead).
	DisableScheduler bool
	// DisableControllerManager turns off the in-process controller
	// manager (run `skiff controller-manager` elsewhere instead).
	DisableControllerManager bool
	// SchedulerConfigFile is the scheduler's configuration file, if any.
	SchedulerConfigFile string
	// LeaseDuration, RenewDeadline and RetryPeriod time the leader
	// elections of the controller manager and the scheduler (zero:
	// upstream's 15s/10s/2s).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity names this server in the controller-manager and scheduler
	// Leases (empty: hostname_uuid, new at each start).
	Identity string
	// ClusterCIDR is the range node IPAM cuts pod CIDRs of
	// NodeCIDRMaskSize bits from (zero: 10.42.0.0/16 and 24).
	ClusterCIDR      string
	NodeCIDRMaskSize int
	// LoadBalancerPool is the IPv4 CIDRs and first-last ranges (comma
	// separated) LoadBalancer services get addresses from (empty: they
	// stay pending).
	LoadBalancerPool string
	// NodeMonitorGracePeriod is how long a node may go without
	// heartbeating before it is unreachable (zero: upstream's 40s).
	NodeMonitorGracePeriod time.Duration
	// DefaultNotReadyTolerationSeconds and
	// DefaultUnreachableTolerationSeconds are the tolerationSeconds of
	// the not-ready/unreachable tolerations every pod gets (nil: 300).
	DefaultNotReadyTolerationSeconds, DefaultUnreachableTolerationSeconds *int64
	// ServiceCIDR is the range cluster IPs come from (empty:
	// 10.43.0.0/16); ServiceNodePortRange the node ports' (empty:
	// 30000-32767).
	ServiceCIDR, ServiceNodePortRange string
	// ClusterDNSListen is the cluster DNS server's address (empty: no
	// cluster DNS; an empty host: the advertise address, see
	// clusterdns.go); ClusterDomain its domain (empty: cluster.local);
	// ClusterDNSResolvConf names its upstream resolvers (empty:
	// /etc/resolv.conf); ClusterDNSServiceIP is the cluster IP of
	// kube-system/kube-dns (empty: the service CIDR's tenth address).
	ClusterDNSListen, ClusterDomain, ClusterDNSResolvConf string
	ClusterDNSServiceIP                                   string
	// ServiceAccountIssuer is the iss of service-account tokens (empty:
	// https://kubernetes.default.svc.<ClusterDomain>); APIAudiences the
	// audiences the API server accepts in them (empty: the issuer);
	// ServiceAccountMaxTokenExpiration caps their lifetime (zero: none).
	ServiceAccountIssuer             string
	APIAudiences                     []string
	ServiceAccountMaxTokenExpiration time.Duration
	// SkiffVersion is the build's version, shown in /version.
	SkiffVersion string
	// Logger receives the control plane's logs.
	Logger *slog.Logger
}

// Server is a running control plane.
type Server struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}
	// Kubeconfig is the admin kubeconfig's path.
	Kubeconfig string

	mu   sync.Mutex
	api  *apiserver.Server
	rest *rest.Config
	// advertise is the address other machines reach this server at
	// (the kubernetes and kube-dns endpoints).
	advertise netip.Addr
}

// New checks the configuration.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: no data dir")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:6443"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Server{cfg: cfg, log: cfg.Logger, ready: make(chan struct{}),
		Kubeconfig: filepath.Join(cfg.DataDir, "admin.kubeconfig")}, nil
}

// Ready is closed when the API server answers /readyz.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// RestConfig returns an admin client configuration (valid after Ready).
func (s *Server) RestConfig() *rest.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rest.CopyConfig(s.rest)
}

// Run starts the control plane and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir %s: %w", s.cfg.DataDir, err)
	}
	pkiDir := filepath.Join(s.cfg.DataDir, "pki")
	ca, err := pki.EnsureCA(pkiDir)
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (is another skiff server running? choose another --listen): %w", s.cfg.Listen, err)
	}
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	s.advertise = advertiseAddress(host)
	certFile, keyFile, err := ca.IssueServing(pkiDir, "apiserver", append([]string{host}, s.cfg.Hosts...))
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("serving certificate: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueClient("skiff-admin", []string{"system:masters"}, 365*24*time.Hour)
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("admin certificate: %w", err)
	}
	kubeletCert, err := issueKubeletClient(ca)
	if err != nil {
		_ = ln.Close()
		return err
	}
	url := "https://" + ln.Addr().String()
	if err := pki.WriteKubeconfig(s.Kubeconfig, url, ca.CertPEM(), certPEM, keyPEM, "skiff-admin"); err != nil {
		_ = ln.Close()
		return fmt.Errorf("write admin kubeconfig: %w", err)
	}
	reg := prometheus.NewRegistry()
	st, err := store.New(ctx, store.Config{DataDir: s.cfg.DataDir, Endpoints: s.cfg.EtcdEndpoints,
		Observe: apiserver.StoreObserver(reg),
		CAFile:  s.cfg.EtcdCAFile, CertFile: s.cfg.EtcdCertFile, KeyFile: s.cfg.EtcdKeyFile, Logger: s.log.With("component", "store")})
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer st.Close()
	saKey, err := ensureServiceAccountKey(ctx, st, pkiDir, s.log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	issuer := s.cfg.ServiceAccountIssuer
	if issuer == "" {
		issuer = apiserver.DefaultIssuer(s.cfg.ClusterDomain)
	}
	svcCIDR, nodePorts, err := s.serviceRanges()
	if err != nil {
		_ = ln.Close()
		return err
	}
	api, err := apiserver.New(apiserver.Config{
		ServiceCIDR: svcCIDR, ServiceNodePortRange: nodePorts, AdvertiseAddress: advertiseAddress(host),
		Store: st, Listener: ln, CertFile: certFile, KeyFile: keyFile, ClientCA: ca.Pool(),
		Resources: builtin.ResourcesWith(core.Options{NotReadyTolerationSeconds: s.cfg.DefaultNotReadyTolerationSeconds,
			UnreachableTolerationSeconds: s.cfg.DefaultUnreachableTolerationSeconds}), Metrics: reg, Bootstrap: bootstrapObjects(ca.CertPEM()),
		Version: version.Info{Major: "1", Minor: "33", GitVersion: KubernetesVersion + "+skiff-" + s.cfg.SkiffVersion,
			Platform: "linux/amd64", GoVersion: goVersion()}, KubeletClientCert: kubeletCert,
		ServiceAccountSigner: saKey, ServiceAccountIssuer: issuer, APIAudiences: s.cfg.APIAudiences,
		ServiceAccountMaxTokenExpiration: s.cfg.ServiceAccountMaxTokenExpiration,
		Logger:                           s.log.With("component", "apiserver"),
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	restCfg := &rest.Config{Host: url, TLSClientConfig: rest.TLSClientConfig{CAData: ca.CertPEM(), CertData: certPEM, KeyData: keyPEM},
		QPS: 1000, Burst: 2000, UserAgent: "skiff-server"}
	s.mu.Lock()
	s.api, s.rest = api, restCfg
	s.mu.Unlock()

	// The API server and store run on apiCtx; the components that talk to
	// them run on compCtx, which is stopped first so that they can release
	// their leases while the API server still answers.
	apiCtx, stopAPI := context.WithCancel(context.Background())
	defer stopAPI()
	var apiWG sync.WaitGroup
	errc := make(chan error, 4)
	apiWG.Add(2)
	go func() { defer apiWG.Done(); st.Run(apiCtx) }()
	go func() {
		defer apiWG.Done()
		if err := api.Run(apiCtx); err != nil {
			errc <- fmt.Errorf("apiserver: %w", err)
		}
	}()
	select {
	case <-api.Ready():
	case err := <-errc:
		stopAPI()
		apiWG.Wait()
		return err
	case <-ctx.Done():
		stopAPI()
		apiWG.Wait()
		return nil
	}
	compCtx, stopComponents := context.WithCancel(ctx)
	defer stopComponents()
	var compWG sync.WaitGroup
	if err := s.startComponents(compCtx, &compWG, restCfg, reg, errc); err != nil {
		stopComponents()
		compWG.Wait()
		stopAPI()
		apiWG.Wait()
		return err
	}
	close(s.ready)
	s.log.Info("skiff server is ready", "url", url, "kubeconfig", s.Kubeconfig)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopComponents()
	done := make(chan struct{})
	go func() { compWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.log.Warn("components did not stop within 10s; stopping the API server anyway")
	}
	stopAPI()
	apiWG.Wait()
	return runErr
}

// serviceRanges parses the service CIDR and node port range.
func (s *Server) serviceRanges() (netip.Prefix, apiserver.PortRange, error) {
	cidr, ports := s.cfg.ServiceCIDR, apiserver.DefaultNodePortRange
	if cidr == "" {
		cidr = DefaultServiceCIDR
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return p, ports, fmt.Errorf("service CIDR: %w", err)
	}
	if s.cfg.ServiceNodePortRange != "" {
		if ports, err = apiserver.ParsePortRange(s.cfg.ServiceNodePortRange); err != nil {
			return p, ports, fmt.Errorf("service node port range: %w", err)
		}
	}
	return p, ports, nil
}

// advertiseAddress is the address the kubernetes service's endpoints
// name: the listening host, or for a wildcard listener this machine's
// first global unicast IPv4 address.
func advertiseAddress(host string) netip.Addr {
	if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
		return a
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ad := range addrs {
		if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// DefaultServiceCIDR is where cluster IPs come from by default.
const DefaultServiceCIDR = "10.43.0.0/16"

// startComponents starts the control loops beside the API server: the
// controller manager and the scheduler, each leader-elected.
func (s *Server) startComponents(ctx context.Context, wg *sync.WaitGroup, restCfg *rest.Config, reg *prometheus.Registry, errc chan<- error) error {
	if s.cfg.ClusterDNSListen != "" {
		if err := s.startClusterDNS(ctx, wg, restCfg); err != nil {
			return err
		}
	}
	if !s.cfg.DisableControllerManager {
		cm, err := manager.New(manager.Config{Rest: restCfg, Logger: s.log.With("component", "controller-manager"),
			LeaseDuration: s.cfg.LeaseDuration, RenewDeadline: s.cfg.RenewDeadline, RetryPeriod: s.cfg.RetryPeriod,
			Identity: s.cfg.Identity, ClusterCIDR: s.cfg.ClusterCIDR, NodeCIDRMaskSize: s.cfg.NodeCIDRMaskSize,
			NodeMonitorGracePeriod: s.cfg.NodeMonitorGracePeriod, LoadBalancerPool: s.cfg.LoadBalancerPool,
			ClusterSigningCertFile: filepath.Join(s.cfg.DataDir, "pki", pki.CACertFile),
			ClusterSigningKeyFile:  filepath.Join(s.cfg.DataDir, "pki", pki.CAKeyFile)})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cm.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("controller manager: %w", err)
			}
		}()
	}
	if s.cfg.DisableScheduler {
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.keepRunning(ctx, "scheduler", func(ctx context.Context) error {
			sch, err := scheduler.New(scheduler.Config{RestConfig: restCfg, ConfigFile: s.cfg.SchedulerConfigFile,
				LeaderElect: true, Identity: s.cfg.Identity,
				LeaseDuration: s.cfg.LeaseDuration, RenewDeadline: s.cfg.RenewDeadline, RetryPeriod: s.cfg.RetryPeriod,
				Logger: s.log.With("component", "scheduler"), Metrics: replacingRegisterer{reg}})
			if err != nil {
				return err
			}
			return sch.Run(ctx)
		})
	}()
	return nil
}

// keepRunning runs a leader-elected component until ctx ends, starting it
// anew when it stops (for example after losing its lease), with a pause
// that grows while it keeps failing.
func (s *Server) keepRunning(ctx context.Context, name string, run func(context.Context) error) {
	pause := time.Second
	for ctx.Err() == nil {
		start := time.Now()
		err := run(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("component stopped; restarting it", "component", name, "err", err, "in", pause)
		if time.Since(start) > time.Minute {
			pause = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		if pause < 30*time.Second {
			pause *= 2
		}
	}
}

// issueKubeletClient issues the client certificate the API server presents
// to node agents (CN skiff-apiserver-kubelet-client, which agents admit to
// their streaming endpoint).
func issueKubeletClient(ca *pki.CA) (*tls.Certificate, error) {
	certPEM, keyPEM, err := ca.IssueClient(stream.APIServerClientCN, nil, 365*24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("kubelet client certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("kubelet client certificate: %w", err)
	}
	return &cert, nil
}
