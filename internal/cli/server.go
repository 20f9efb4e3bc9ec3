package cli

import (
	"context"
	"flag"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/agent/podnet"
	"github.com/skiff-sh/skiff/internal/apiserver"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/core"
	"github.com/skiff-sh/skiff/internal/controller/manager"
	"github.com/skiff-sh/skiff/internal/controller/nodeipam"
	"github.com/skiff-sh/skiff/internal/controller/nodelifecycle"
	"github.com/skiff-sh/skiff/internal/dns"
	"github.com/skiff-sh/skiff/internal/server"
)

func kubernetesVersion() string { return server.KubernetesVersion }

// serverFlags are the flags of commands that run a control plane.
type serverFlags struct {
	// service-account tokens
	saIssuer, apiAudiences string
	saMaxTokenExpiration   time.Duration

	dataDir, listen, logLevel string
	hosts, etcdEndpoints      string
	etcdCA, etcdCert, etcdKey string
	disableAgent              bool
	podNetwork                string // the embedded agent's
	disableScheduler          bool
	disableControllerManager  bool
	schedulerConfig           string
	nodeMonitorGrace          time.Duration
	notReadyTolerationSeconds int64
	unreachableTolSeconds     int64

	// leader election and node IPAM
	leaseDuration, renewDeadline time.Duration
	retryPeriod                  time.Duration
	identity                     string
	clusterCIDR                  string
	nodeCIDRMaskSize             int

	// services and cluster DNS
	serviceCIDR, nodePortRange string
	loadBalancerPool           string
	dnsListen, clusterDomain   string
	clusterDNSIP               string

	profileListen string
}

func (f *serverFlags) register(fs *flag.FlagSet, defaultDir string) {
	fs.StringVar(&f.dataDir, "data-dir", defaultDir, "directory for certificates, the admin kubeconfig and the embedded etcd's data")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:6443", "HTTPS address of the API server (host:port)")
	fs.StringVar(&f.hosts, "tls-san", "", "extra comma-separated names and IPs for the API server's certificate")
	fs.StringVar(&f.etcdEndpoints, "etcd-endpoints", "", "comma-separated URLs of an external etcd cluster; empty runs etcd embedded")
	fs.StringVar(&f.etcdCA, "etcd-cafile", "", "CA bundle that verifies the external etcd's certificate")
	fs.StringVar(&f.etcdCert, "etcd-certfile", "", "client certificate for the external etcd")
	fs.StringVar(&f.etcdKey, "etcd-keyfile", "", "client key for the external etcd")
	fs.BoolVar(&f.disableAgent, "disable-agent", false, "do not run the node agent of this machine beside the control plane (it needs root and containerd, and programs this network namespace: CNI bridge, nftables)")
	fs.StringVar(&f.podNetwork, "pod-network", podnet.ModeHostGW, "the embedded node agent's --pod-network (with this server's --cluster-cidr and --service-cidr): "+podNetworkHelp)
	fs.BoolVar(&f.disableScheduler, "disable-scheduler", false, "do not run the scheduler in this process (run 'skiff scheduler' elsewhere)")
	fs.BoolVar(&f.disableControllerManager, "disable-controller-manager", false, "do not run the controller manager in this process (run 'skiff controller-manager' elsewhere)")
	fs.StringVar(&f.schedulerConfig, "scheduler-config", "", "scheduler configuration file (YAML SchedulerConfiguration)")
	fs.DurationVar(&f.nodeMonitorGrace, "node-monitor-grace-period", nodelifecycle.DefaultGracePeriod, "how long a node may go without heartbeating before it is marked unreachable")
	fs.Int64Var(&f.notReadyTolerationSeconds, "default-not-ready-toleration-seconds", core.DefaultTolerationSeconds, "tolerationSeconds of the node.kubernetes.io/not-ready:NoExecute toleration added to pods that have none")
	fs.Int64Var(&f.unreachableTolSeconds, "default-unreachable-toleration-seconds", core.DefaultTolerationSeconds, "tolerationSeconds of the node.kubernetes.io/unreachable:NoExecute toleration added to pods that have none")
	fs.DurationVar(&f.leaseDuration, "leader-elect-lease-duration", manager.DefaultLeaseDuration, "controller-manager and scheduler Leases: how long a Lease is valid without renewal; after a leader dies, another server takes over this long after its last renewal")
	fs.DurationVar(&f.renewDeadline, "leader-elect-renew-deadline", manager.DefaultRenewDeadline, "how long a leader tries to renew its Lease before it stops acting (less than the lease duration)")
	fs.DurationVar(&f.retryPeriod, "leader-elect-retry-period", manager.DefaultRetryPeriod, "how often to try to acquire or renew a Lease (less than the renew deadline)")
	fs.StringVar(&f.identity, "leader-elect-identity", "", "name of this server in the Leases; unique per server (default hostname_uuid)")
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", nodeipam.DefaultClusterCIDR, "range the pod CIDRs of nodes are cut from")
	fs.IntVar(&f.nodeCIDRMaskSize, "node-cidr-mask-size", nodeipam.DefaultNodeMaskSize, "prefix length of each node's pod CIDR (the cluster CIDR holds 2^(this - its length) nodes)")
	fs.StringVar(&f.serviceCIDR, "service-cidr", server.DefaultServiceCIDR, "IPv4 range services' cluster IPs come from (its first address is the kubernetes service's)")
	fs.StringVar(&f.nodePortRange, "service-node-port-range", apiserver.DefaultNodePortRange.String(), "range of the node ports of NodePort and LoadBalancer services")
	fs.StringVar(&f.loadBalancerPool, "load-balancer-pool", "", "IPv4 CIDRs and first-last ranges, comma separated, that LoadBalancer services get addresses from (empty: they stay pending)")
	fs.StringVar(&f.dnsListen, "cluster-dns-listen", server.DefaultClusterDNSListen, "UDP and TCP address of the cluster DNS server; without a host it listens on the API server's advertise address (--listen's host, or this machine's first IPv4 address for a wildcard), which pods reach through the kube-dns service; a loopback address serves this machine only (empty: no cluster DNS)")
	fs.StringVar(&f.clusterDNSIP, "cluster-dns", "", "cluster IP of the kube-system/kube-dns service, pods' nameserver (default: the service CIDR's tenth address, 10.43.0.10)")
	fs.StringVar(&f.clusterDomain, "cluster-domain", dns.DefaultDomain, "the cluster's DNS domain")
	fs.StringVar(&f.saIssuer, "service-account-issuer", "", "iss of service-account tokens (default https://kubernetes.default.svc.<cluster-domain>)")
	fs.StringVar(&f.apiAudiences, "api-audiences", "", "comma-separated audiences the API server accepts in service-account tokens and gives token requests without any (default: the issuer)")
	fs.DurationVar(&f.saMaxTokenExpiration, "service-account-max-token-expiration", 0, "longest lifetime a token request gets; longer requests are cut to it (0: no limit)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.profileListen, "profile-listen", "", "plain-HTTP address (host:port, port 0 picks one and logs it) serving Go's pprof profiles of this process at /debug/pprof/ (empty: none); no authentication, so keep it on loopback")
}

func (f *serverFlags) config(e *env) (server.Config, error) {
	log, err := newLogger(e.stderr, f.logLevel)
	if err != nil {
		return server.Config{}, err
	}
	return server.Config{
		DataDir: f.dataDir, Listen: f.listen, Hosts: splitList(f.hosts),
		EtcdEndpoints: splitList(f.etcdEndpoints), EtcdCAFile: f.etcdCA, EtcdCertFile: f.etcdCert, EtcdKeyFile: f.etcdKey,
		DisableScheduler: f.disableScheduler, DisableControllerManager: f.disableControllerManager, SchedulerConfigFile: f.schedulerConfig,
		LeaseDuration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod, Identity: f.identity,
		ClusterCIDR: f.clusterCIDR, NodeCIDRMaskSize: f.nodeCIDRMaskSize, LoadBalancerPool: f.loadBalancerPool,
		ServiceCIDR: f.serviceCIDR, ServiceNodePortRange: f.nodePortRange, ClusterDNSListen: f.dnsListen, ClusterDomain: f.clusterDomain,
		ClusterDNSServiceIP:              f.clusterDNSIP,
		NodeMonitorGracePeriod:           f.nodeMonitorGrace,
		DefaultNotReadyTolerationSeconds: &f.notReadyTolerationSeconds, DefaultUnreachableTolerationSeconds: &f.unreachableTolSeconds,
		ServiceAccountIssuer: f.saIssuer, APIAudiences: splitList(f.apiAudiences), ServiceAccountMaxTokenExpiration: f.saMaxTokenExpiration,
		SkiffVersion: Version, Logger: log,
	}, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runServer(ctx context.Context, e *env, args []string) error {
	var f serverFlags
	fs := newFlagSet(e, "server", `
Run skiff's control plane: etcd (embedded unless --etcd-endpoints is given) and
the Kubernetes API server, with its control loops. On first start it creates a
cluster CA and serving certificates in the data dir and writes an admin
kubeconfig to DATA_DIR/admin.kubeconfig. It is ready when /readyz answers 200.

Unless --disable-agent is given, the server also runs a node agent for this
machine (as 'skiff agent' with its default flags: the CRI runtime with its own
containerd, state under DATA_DIR/agent, the CNI bridge skiff0, the service
proxy's nftables tables ip skiff-proxy and ip skiff-proxy-00…15 and the pod
network of --pod-network, host-gw by default, with this server's
--cluster-cidr and --service-cidr, in this network namespace), labelled
node-role.kubernetes.io/control-plane, with a node certificate from the
cluster CA; agents on other machines join with 'skiff agent' and the same
--pod-network. It needs root and containerd; without them the server runs
alone and logs why. Tests and control-plane-only servers pass --disable-agent.`,
		`  skiff server --data-dir /var/lib/skiff --listen 127.0.0.1:6443
  kubectl --kubeconfig /var/lib/skiff/admin.kubeconfig get namespaces`)
	f.register(fs, "/var/lib/skiff")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkPodNetwork(f.podNetwork); err != nil {
		return err
	}
	cfg, err := f.config(e)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := serveProfiles(ctx, f.profileListen, cfg.Logger); err != nil {
		return err
	}
	if f.disableAgent {
		return srv.Run(ctx)
	}
	return runServerAndAgent(ctx, &f, srv, cfg.Logger)
}
