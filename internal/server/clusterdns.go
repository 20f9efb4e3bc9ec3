package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/dns"
)

// DefaultClusterDNSListen is where the cluster DNS listens by default:
// port 10053 on the advertise address (see clusterDNSListen).
const DefaultClusterDNSListen = ":10053"

// clusterDNSListen is the cluster DNS's listen address: the configured
// one, where an empty host stands for the advertise address (loopback
// when there is none), so that pods reach it through kube-dns.
func clusterDNSListen(listen string, advertise netip.Addr) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host != "" {
		return listen
	}
	if !advertise.IsValid() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort(advertise.String(), port)
}

// dnsEndpoint is where pods reach a DNS listener at addr: a wildcard
// listener at the advertise address.
func dnsEndpoint(addr string, advertise netip.Addr) netip.AddrPort {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}
	}
	if ap.Addr().IsUnspecified() && advertise.IsValid() {
		return netip.AddrPortFrom(advertise, ap.Port())
	}
	return ap
}

// clusterDNSServiceIP is kube-dns's cluster IP: the configured one, or
// the tenth address of the service CIDR (10.43.0.10).
func (s *Server) clusterDNSServiceIP() (string, error) {
	cidr, _, err := s.serviceRanges()
	if err != nil {
		return "", err
	}
	if ip := s.cfg.ClusterDNSServiceIP; ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil || !cidr.Contains(a) {
			return "", fmt.Errorf("cluster DNS IP %q: want an address of the service CIDR %s", ip, cidr)
		}
		return a.String(), nil
	}
	a := cidr.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	return a.String(), nil
}

// startClusterDNS runs the cluster DNS server and the publisher of its
// kube-dns endpoint, restarting them if they fail (e.g. while the
// address is taken).
func (s *Server) startClusterDNS(ctx context.Context, wg *sync.WaitGroup, restCfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	svcIP, err := s.clusterDNSServiceIP()
	if err != nil {
		return err
	}
	listen := clusterDNSListen(s.cfg.ClusterDNSListen, s.advertise)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.keepRunning(ctx, "cluster-dns", func(ctx context.Context) error {
			return s.runClusterDNS(ctx, cs, listen, svcIP)
		})
	}()
	return nil
}

// runClusterDNS serves cluster DNS on listen and, once it serves,
// publishes kube-dns and this server's endpoint; the endpoint is
// withdrawn when the server stops.
func (s *Server) runClusterDNS(ctx context.Context, cs kubernetes.Interface, listen, svcIP string) error {
	log := s.log.With("component", "cluster-dns")
	d, err := dns.New(dns.Config{Client: cs, Listen: listen, Domain: s.cfg.ClusterDomain,
		ResolvConf: s.cfg.ClusterDNSResolvConf, Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	published := make(chan struct{})
	go func() {
		defer close(published)
		select {
		case <-d.Ready():
		case <-ctx.Done():
			return
		}
		p, err := dns.NewPublisher(dns.PublisherConfig{Client: cs, ServiceIP: svcIP, Endpoint: dnsEndpoint(d.Addr(), s.advertise),
			Identity: s.cfg.Identity, Logger: log})
		if err == nil {
			err = p.Run(ctx)
		}
		if err != nil {
			log.Error("publishing the cluster DNS service", "err", err)
		}
	}()
	err = d.Run(ctx)
	cancel()
	<-published
	return err
}
