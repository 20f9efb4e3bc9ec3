package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
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
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent/poddns"
)

// Defaults of the pods' DNS.
const (
	DefaultClusterDomain = "cluster.local"
	DefaultResolvConf    = "/etc/resolv.conf"
	defaultHostsFile     = "/etc/hosts"
	// ClusterDNSNamespace/ClusterDNSService is the Service whose cluster
	// IP is the pods' nameserver when Config.ClusterDNS is empty.
	ClusterDNSNamespace = metav1.NamespaceSystem
	ClusterDNSService   = "kube-dns"
	// servicesSyncTimeout bounds the wait for the first list of services
	// before a container's environment can be built.
	servicesSyncTimeout = 30 * time.Second
	// hostsFileName is the pod's /etc/hosts in its volume directory (no
	// volume can have this name: volume names are DNS labels).
	hostsFileName = ".etc-hosts"
)

// cluster is what pods' DNS and service environment variables need from
// the cluster and the node: the Services (one informer, started on first
// use), the cluster DNS servers and domain, the node's resolv.conf and
// /etc/hosts.
type cluster struct {
	client     kubernetes.Interface
	clusterDNS []string
	domain     string
	resolvConf string
	hostsFile  string
	log        *slog.Logger

	once     sync.Once
	warnOnce sync.Once // a loopback nameserver in the node's resolv.conf
	stopCh   chan struct{}
	stopOnce sync.Once
	services corelisters.ServiceLister
	synced   cache.InformerSynced
}

func newCluster(cfg Config, log *slog.Logger) *cluster {
	c := &cluster{client: cfg.Client, clusterDNS: cfg.ClusterDNS, domain: cfg.ClusterDomain, resolvConf: cfg.ResolvConf,
		hostsFile: defaultHostsFile, log: log, stopCh: make(chan struct{})}
	if c.domain == "" {
		c.domain = DefaultClusterDomain
	}
	if c.resolvConf == "" {
		c.resolvConf = DefaultResolvConf
	}
	return c
}

// stop ends the informer.
func (c *cluster) stop() { c.stopOnce.Do(func() { close(c.stopCh) }) }

// lister starts the informer on first use and waits (bounded) until it
// has listed the services once.
func (c *cluster) lister(ctx context.Context) (corelisters.ServiceLister, error) {
	if c.client == nil {
		return nil, nil
	}
	c.once.Do(func() {
		f := informers.NewSharedInformerFactory(c.client, 0)
		inf := f.Core().V1().Services()
		c.services, c.synced = inf.Lister(), inf.Informer().HasSynced
		f.Start(c.stopCh)
	})
	if c.synced() {
		return c.services, nil
	}
	ctx, cancel := context.WithTimeout(ctx, servicesSyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced) {
		return nil, errors.New("services have not yet been read at least once, cannot construct envvars")
	}
	return c.services, nil
}

// serviceEnv is the service environment variables of a pod in namespace.
func (c *cluster) serviceEnv(ctx context.Context, namespace string, enableServiceLinks bool) (map[string]string, error) {
	l, err := c.lister(ctx)
	if err != nil || l == nil {
		return nil, err
	}
	svcs, err := l.Services(namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	if namespace != metav1.NamespaceDefault {
		if k, err := l.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			svcs = append(svcs, k)
		}
	}
	return serviceEnv(namespace, enableServiceLinks, svcs), nil
}

// nameservers are the cluster DNS servers: the configured ones, or the
// cluster IP of kube-system/kube-dns (none when it has none yet).
func (c *cluster) nameservers(ctx context.Context) []string {
	if len(c.clusterDNS) > 0 {
		return c.clusterDNS
	}
	l, err := c.lister(ctx)
	if err != nil || l == nil {
		return nil
	}
	svc, err := l.Services(ClusterDNSNamespace).Get(ClusterDNSService)
	if err != nil {
		if !apierrors.IsNotFound(err) {
			c.log.Warn("reading the cluster DNS service", "err", err)
		}
		return nil
	}
	if !hasClusterIP(svc) {
		return nil
	}
	return []string{svc.Spec.ClusterIP}
}

// node is what the node contributes to a pod's DNS.
func (c *cluster) node(ctx context.Context) poddns.Node {
	n := poddns.Node{ClusterDNS: c.nameservers(ctx), ClusterDomain: c.domain}
	f, err := os.Open(c.resolvConf)
	if err != nil {
		c.log.Warn("the node's resolv.conf: pods with dnsPolicy Default resolve on their own localhost", "err", err)
		return n
	}
	defer f.Close()
	host, err := poddns.ParseResolvConf(f)
	if err != nil {
		c.log.Warn("the node's resolv.conf", "path", c.resolvConf, "err", err)
	}
	for _, s := range host.Servers {
		if a, err := netip.ParseAddr(s); err == nil && a.IsLoopback() {
			c.warnOnce.Do(func() {
				c.log.Warn("the node's resolv.conf names a loopback nameserver, which pods with dnsPolicy Default cannot reach; "+
					"give --resolv-conf the real one (with systemd-resolved: /run/systemd/resolve/resolv.conf)", "path", c.resolvConf, "nameserver", s)
			})
		}
	}
	n.Host = &host
	return n
}

// podSandboxConfig is the CRI sandbox of the pod with its hostname as the
// kubelet sets it.
func (r *Runtime) podSandboxConfig(p *corev1.Pod, attempt uint32) *runtimeapi.PodSandboxConfig {
	cfg := sandboxConfig(p, attempt, r.cfg.PodLogDir)
	if h, err := poddns.SandboxHostname(p, r.cluster.domain); err == nil {
		cfg.Hostname = h
	}
	return cfg
}

// newSandboxConfig is the configuration of a new sandbox: with the pod's
// DNS (warnings recorded as events, as the kubelet's), failing for a
// hostname that cannot be set.
func (r *Runtime) newSandboxConfig(ctx context.Context, p *corev1.Pod, attempt uint32) (*runtimeapi.PodSandboxConfig, error) {
	if _, err := poddns.SandboxHostname(p, r.cluster.domain); err != nil {
		r.event(p, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return nil, fmt.Errorf("sandbox of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	cfg := r.podSandboxConfig(p, attempt)
	rc, warns := poddns.Config(r.cluster.node(ctx), p)
	for _, w := range warns {
		r.event(p, corev1.EventTypeWarning, w.Reason, "%s", w.Message)
		if w.NodeMessage != "" && r.cfg.Recorder != nil && p.Spec.NodeName != "" {
			node := &corev1.ObjectReference{Kind: "Node", Name: p.Spec.NodeName, UID: types.UID(p.Spec.NodeName)}
			r.cfg.Recorder.Eventf(node, corev1.EventTypeWarning, w.Reason, "%s", w.NodeMessage)
		}
	}
	cfg.DnsConfig = &runtimeapi.DNSConfig{Servers: rc.Servers, Searches: rc.Searches, Options: rc.Options}
	return cfg, nil
}

// hostsMount writes the pod's /etc/hosts as the kubelet does and returns
// its mount for container c: none when c mounts something there itself or
// the pod has no IP yet.
func (r *Runtime) hostsMount(p *corev1.Pod, c *corev1.Container, podIPs []string) (*runtimeapi.Mount, error) {
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == "/etc/hosts" {
			return nil, nil
		}
	}
	var content []byte
	if p.Spec.HostNetwork {
		node, err := os.ReadFile(r.cluster.hostsFile)
		if err != nil {
			return nil, fmt.Errorf("the node's hosts file: %w", err)
		}
		content = poddns.HostNetworkHostsFile(p, node)
	} else {
		if len(podIPs) == 0 {
			return nil, nil
		}
		host, domain, err := poddns.HostnameAndDomain(p, r.cluster.domain)
		if err != nil {
			return nil, err
		}
		content = poddns.HostsFile(p, podIPs, host, domain)
	}
	dir := r.podVolumeDir(p.UID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("hosts file: %w", err)
	}
	path := filepath.Join(dir, hostsFileName)
	if err := os.WriteFile(path, content, 0o644); err != nil { //nolint:gosec // /etc/hosts is world-readable
		return nil, fmt.Errorf("hosts file: %w", err)
	}
	return &runtimeapi.Mount{ContainerPath: "/etc/hosts", HostPath: path}, nil
}

// ServiceEnv implements refs with the runtime's service informer.
func (a apiRefs) ServiceEnv(ctx context.Context, namespace string, enableServiceLinks bool) (map[string]string, error) {
	if a.cluster == nil {
		return nil, nil
	}
	return a.cluster.serviceEnv(ctx, namespace, enableServiceLinks)
}
