package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/agent/podnet"
	"github.com/skiff-sh/skiff/internal/agent/sim"
	"github.com/skiff-sh/skiff/internal/agent/stream"
	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/controller/nodeipam"
	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/server"
)

// agentFlags are the flags of 'skiff agent'.
type agentFlags struct {
	server, token, kubeconfig, caFile string
	insecure                          bool
	nodeName, nodeLabels, taints      string
	cpu, memory, storage, size        string
	maxPods                           int
	runtime, namePrefix, dataDir      string
	nodes                             int
	qps                               float64
	logLevel                          string
	// --runtime=cri
	endpoint, containerdBin, busybox string
	cniConfDir, podCIDR              string
	proxy                            bool
	insecureRegistries               string
	clusterDNS, clusterDomain        string
	resolvConf                       string
	kubeletPort                      int
	nodeIP, podNetwork               string
	clusterCIDR, serviceCIDR         string
	imageGCHigh, imageGCLow          int
}

func (f *agentFlags) register(fs interface {
	StringVar(*string, string, string, string)
	BoolVar(*bool, string, bool, string)
	IntVar(*int, string, int, string)
	Float64Var(*float64, string, float64, string)
}) {
	fs.StringVar(&f.server, "server", "", "URL of the API server, e.g. https://10.0.0.1:6443 (with --token)")
	fs.StringVar(&f.token, "token", "", "bootstrap token from 'skiff token create' (with --server)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig to reach the API server with, instead of --server and --token")
	fs.StringVar(&f.caFile, "ca-file", "", "cluster CA certificate that verifies the server (the server's DATA_DIR/pki/ca.crt)")
	fs.BoolVar(&f.insecure, "insecure-skip-tls-verify", false, "do not verify the server's certificate (unsafe; for tests only)")
	fs.StringVar(&f.nodeName, "node-name", "", "name of the node; empty means this machine's hostname")
	fs.StringVar(&f.nodeLabels, "node-labels", "", "labels to add to the node, k=v,k2=v2")
	fs.StringVar(&f.taints, "register-with-taints", "", "taints the node registers with, key=value:Effect,key2:Effect")
	fs.StringVar(&f.size, "size", "", "named node size ("+sizeNames()+"): sets cpu, memory and storage and the node.kubernetes.io/instance-type label")
	fs.StringVar(&f.cpu, "cpu", "", "CPU capacity to report (e.g. 4); empty means the size's, or the machine's")
	fs.StringVar(&f.memory, "memory", "", "memory capacity to report (e.g. 8Gi); empty means the size's, or the machine's")
	fs.StringVar(&f.storage, "ephemeral-storage", "", "ephemeral-storage capacity to report (e.g. 100Gi); empty means the size's, or the data dir's file system")
	fs.IntVar(&f.maxPods, "max-pods", agent.DefaultMaxPods, "number of pods the node can run")
	fs.StringVar(&f.runtime, "runtime", "cri", "container runtime: cri (containerd) or sim (simulated nodes for benchmarks)")
	fs.IntVar(&f.nodes, "nodes", 1, "with --runtime=sim: number of simulated nodes to run in this process")
	fs.StringVar(&f.namePrefix, "name-prefix", "sim-", "with --runtime=sim: simulated nodes are named <prefix>0 … <prefix>N-1")
	fs.StringVar(&f.dataDir, "data-dir", "/var/lib/skiff-agent", "directory for the agent's state")
	fs.Float64Var(&f.qps, "kube-api-qps", 0, "requests per second to the API server (burst is twice this); 0 picks one from the number of nodes")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.endpoint, "container-runtime-endpoint", "", "with --runtime=cri: CRI socket of a containerd to use (unix:///run/containerd/containerd.sock); empty runs the agent's own containerd under DATA_DIR/containerd")
	fs.StringVar(&f.containerdBin, "containerd", "containerd", "with --runtime=cri: the containerd binary the agent runs")
	fs.StringVar(&f.busybox, "busybox", image.DefaultBusybox, "with --runtime=cri: static busybox the sandbox (pause) image is built from")
	fs.StringVar(&f.cniConfDir, "cni-conf-dir", "", "with --runtime=cri: where the pod network's CNI config is written; empty means the agent's containerd's, or /etc/cni/net.d with --container-runtime-endpoint")
	fs.BoolVar(&f.proxy, "proxy", true, "with --runtime=cri: run the service proxy, which programs the nftables tables ip skiff-proxy and ip skiff-proxy-00…15 of the agent's network namespace (--proxy=false when something else does, or in tests on the host's network)")
	fs.StringVar(&f.clusterDNS, "cluster-dns", "", "with --runtime=cri: comma-separated IPs of the cluster DNS that pods with dnsPolicy ClusterFirst use; empty means the cluster IP of the service kube-system/kube-dns")
	fs.StringVar(&f.clusterDomain, "cluster-domain", cri.DefaultClusterDomain, "with --runtime=cri: the cluster's DNS domain (pods search <namespace>.svc.<domain>, svc.<domain> and <domain>)")
	fs.StringVar(&f.resolvConf, "resolv-conf", cri.DefaultResolvConf, "with --runtime=cri: the resolver configuration pods with dnsPolicy Default get (and whose search domains ClusterFirst pods add)")
	fs.IntVar(&f.kubeletPort, "kubelet-port", stream.DefaultPort, "with --runtime=cri: HTTPS port of the node's streaming endpoint (kubectl logs, exec, attach, port-forward through the API server) on the node IP; 0 turns it off")
	fs.StringVar(&f.insecureRegistries, "insecure-registry", "", "with --runtime=cri: comma-separated registries (HOST:PORT) the agent's containerd pulls from over plain HTTP (a hosts.toml each under DATA_DIR/containerd/certs.d); not with --container-runtime-endpoint")
	fs.StringVar(&f.podCIDR, "pod-cidr", "", "with --runtime=cri: pod CIDR to use until the node's spec.podCIDR is set")
	fs.IntVar(&f.imageGCHigh, "image-gc-high-threshold", cri.DefaultImageGCHighThreshold, "with --runtime=cri: percent of the image file system's disk usage above which unused images are removed (100 disables)")
	fs.IntVar(&f.imageGCLow, "image-gc-low-threshold", cri.DefaultImageGCLowThreshold, "with --runtime=cri: percent of disk usage image garbage collection frees down to")
	fs.StringVar(&f.nodeIP, "node-ip", "", "with --runtime=cri: the node's InternalIP (other nodes route its pods through it); empty means the first non-loopback IPv4 address")
	fs.StringVar(&f.podNetwork, "pod-network", podnet.ModeHostGW, "with --runtime=cri: "+podNetworkHelp)
	fs.StringVar(&f.clusterCIDR, "cluster-cidr", nodeipam.DefaultClusterCIDR, "with --pod-network: the cluster's pod range (the server's --cluster-cidr)")
	fs.StringVar(&f.serviceCIDR, "service-cidr", server.DefaultServiceCIDR, "with --pod-network: the cluster's service range (the server's --service-cidr)")
}

// podNetworkHelp is the help of the agent's and the server's --pod-network.
const podNetworkHelp = "how pods reach pods on other nodes: host-gw (routes every other node's pod CIDR via its InternalIP; the nodes share an L2 network), vxlan (through the VXLAN device skiff.vxlan, UDP 4789 to the nodes' InternalIPs; nodes on different networks) or none (no routes; tests and benchmarks whose agent is on the host's network); host-gw and vxlan add an unreachable route for --cluster-cidr and a loopback route for --service-cidr and masquerade pod egress leaving the cluster CIDR, in the agent's network namespace"

func sizeNames() string {
	return "small, medium, large, xlarge"
}

func runAgent(ctx context.Context, e *env, args []string) error {
	var f agentFlags
	fs := newFlagSet(e, "agent", `
Run skiff's node agent: it registers this machine as a Node, heartbeats
through a Lease in kube-node-lease, and runs the pods the scheduler binds to
the node, reporting their status.

Join a cluster with a bootstrap token ('skiff token create' on the server)
and the cluster CA (the server's DATA_DIR/pki/ca.crt), or with a kubeconfig.
With --runtime=cri the token only bootstraps: the agent makes a key
(DATA_DIR/pki/node.key), asks for a client certificate for
system:node:<name> through a CertificateSigningRequest (the server approves
it for bootstrap tokens, or 'kubectl certificate approve' it), writes
DATA_DIR/node.kubeconfig and from then on uses that, also after restarts
without --token; it renews the certificate at 80% of its lifetime.
--runtime=sim keeps using the token (one certificate per simulated node
would cost a CSR each).

--runtime=sim runs no containers: it hosts --nodes simulated nodes in one
process (sim-0 … sim-N-1) that report pods as Running with IPs from their pod
CIDR. Use it for benchmarks and control-plane tests. A pod annotated
sim.skiff.dev/exit-after: 2s (and optionally sim.skiff.dev/exit-code: "1")
has its containers exit after that long.

--runtime=cri (the default) runs pods as containers through containerd's CRI
plugin: unless --container-runtime-endpoint is given, the agent starts its own
containerd (config, root, state and socket under DATA_DIR/containerd), imports
its sandbox image skiff.local/pause:latest, and gives pods IPs from the node's
spec.podCIDR on the bridge skiff0 (CNI plugins from /usr/lib/cni). It needs
root and Debian's containerd, runc and containernetworking-plugins. It also
runs the service proxy (nftables tables ip skiff-proxy and ip skiff-proxy-00…15
in the agent's network namespace) unless --proxy=false, and the pod network
of --pod-network (host-gw by default: routes to the other nodes' pod CIDRs,
so that pods reach pods on every node; --pod-network=none on the host's
network in tests).
'skiff images build' imports the test images into the agent's containerd.`,
		`  skiff token create --kubeconfig /var/lib/skiff/admin.kubeconfig
  skiff agent --runtime=sim --nodes 100 --server https://127.0.0.1:6443 \
      --token abcdef.0123456789abcdef --ca-file /var/lib/skiff/pki/ca.crt
  kubectl get nodes`)
	f.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(e.stderr, f.logLevel)
	if err != nil {
		return err
	}
	switch f.runtime {
	case "sim", "cri":
	default:
		return usageError{fmt.Errorf("--runtime %q: use cri or sim", f.runtime)}
	}
	if err := checkPodNetwork(f.podNetwork); err != nil {
		return err
	}
	if f.nodes <= 0 {
		return usageError{fmt.Errorf("--nodes must be positive")}
	}
	labels, err := agent.ParseLabels(f.nodeLabels)
	if err != nil {
		return usageError{fmt.Errorf("--node-labels: %w", err)}
	}
	taints, err := agent.ParseTaints(f.taints)
	if err != nil {
		return usageError{fmt.Errorf("--register-with-taints: %w", err)}
	}
	capacity, err := f.capacity()
	if err != nil {
		return err
	}
	cfg, err := f.restConfig(log)
	if err != nil {
		return err
	}
	if f.runtime == "cri" && f.kubeconfig == "" {
		nodeCfg, stop, err := f.nodeCredentials(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer stop()
		cfg = nodeCfg
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("API client: %w", err)
	}
	if f.runtime == "cri" {
		return runCRIAgent(ctx, &f, client, labels, taints, log)
	}
	nodes, err := sim.New(sim.Config{Client: client, Nodes: f.nodes, NamePrefix: f.namePrefix,
		Capacity: capacity, Labels: labels, Taints: taints, InstanceType: f.size, Logger: log})
	if err != nil {
		return err
	}
	log.Info("starting simulated nodes", "nodes", f.nodes, "prefix", f.namePrefix, "server", cfg.Host, "qps", cfg.QPS)
	return nodes.Run(ctx)
}

// runCRIAgent runs one node whose pods are containers: it starts the
// agent's containerd (unless --container-runtime-endpoint names one),
// imports the sandbox image and runs the agent on the CRI runtime.
func runCRIAgent(ctx context.Context, f *agentFlags, client kubernetes.Interface, labels map[string]string,
	taints []corev1.Taint, log *slog.Logger) error {
	if f.nodes != 1 {
		return usageError{errors.New("--nodes is for --runtime=sim; a CRI agent runs one node")}
	}
	clusterDNS, err := parseIPv4List(f.clusterDNS)
	if err != nil {
		return usageError{fmt.Errorf("--cluster-dns: %w", err)}
	}
	name, err := f.node()
	if err != nil {
		return err
	}
	dataDir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	var capacity corev1.ResourceList // nil: this machine's
	if f.size != "" || f.cpu != "" || f.memory != "" || f.storage != "" {
		if capacity, err = f.capacity(); err != nil {
			return err
		}
	}
	endpoint, cniConfDir := f.endpoint, f.cniConfDir
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var insecureRegistries []string
	if f.insecureRegistries != "" {
		if endpoint != "" {
			return usageError{errors.New("--insecure-registry configures the agent's own containerd; configure the one at --container-runtime-endpoint yourself")}
		}
		insecureRegistries = splitList(f.insecureRegistries)
	}
	if endpoint == "" {
		ctrd, err := containerd.New(containerd.Config{Dir: filepath.Join(dataDir, "containerd"), Binary: f.containerdBin,
			SandboxImage: image.PauseName, CNIConfDir: cniConfDir, InsecureRegistries: insecureRegistries, Logger: log})
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- ctrd.Run(ctx) }()
		defer func() {
			cancel()
			<-done
		}()
		select {
		case <-ctrd.Ready():
		case err := <-done:
			return fmt.Errorf("containerd: %w", err)
		case <-ctx.Done():
			return nil
		}
		endpoint, cniConfDir = ctrd.Endpoint(), ctrd.CNIConfDir()
		pause := filepath.Join(dataDir, "images", image.ArchiveFileName(image.PauseName))
		if err := os.MkdirAll(filepath.Dir(pause), 0o700); err != nil {
			return err
		}
		if err := image.WritePause(ctx, f.busybox, pause); err != nil {
			return fmt.Errorf("sandbox image: %w", err)
		}
		if err := (containerd.Importer{Address: endpoint}).Import(ctx, image.PauseName, pause); err != nil {
			return fmt.Errorf("sandbox image: %w", err)
		}
	} else if cniConfDir == "" {
		cniConfDir = "/etc/cni/net.d"
	}
	if unregister, err := containerd.Register(containerd.DefaultRegistryDir, name, endpoint); err != nil {
		log.Warn("'skiff images build' will not find this node's containerd", "err", err)
	} else {
		defer unregister()
	}
	recorder, stopEvents := cri.NewRecorder(ctx, client, name)
	defer stopEvents()
	rt, err := cri.New(cri.Config{Endpoint: endpoint, Recorder: recorder, CNIConfDir: cniConfDir, CNIDataDir: filepath.Join(dataDir, "cni"),
		PodCIDR: f.podCIDR, PodLogDir: filepath.Join(dataDir, "pods"), VolumeDir: filepath.Join(dataDir, "volumes"),
		ImageGCHighThreshold: f.imageGCHigh, ImageGCLowThreshold: f.imageGCLow,
		Client: client, ClusterDNS: clusterDNS, ClusterDomain: f.clusterDomain, ResolvConf: f.resolvConf, Logger: log})
	if err != nil {
		return err
	}
	defer rt.Close()
	var addrs []corev1.NodeAddress
	if f.nodeIP != "" {
		if net.ParseIP(f.nodeIP).To4() == nil {
			return usageError{fmt.Errorf("--node-ip %q: want an IPv4 address", f.nodeIP)}
		}
		addrs = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: f.nodeIP}, {Type: corev1.NodeHostName, Address: name}}
	}
	a, err := agent.New(agent.Config{NodeName: name, Client: client, Runtime: rt, Capacity: capacity, DataDir: dataDir,
		Labels: labels, Taints: taints, InstanceType: f.size, KubeletPort: int32(f.kubeletPort), Addresses: addrs, Logger: log})
	if err != nil {
		return err
	}
	if err := runPodNetwork(ctx, f, client, name, log); err != nil {
		return err
	}
	if f.kubeletPort != 0 {
		stopStream, err := startStream(ctx, f, a.NodeIP(), endpoint, filepath.Join(dataDir, "pods"), log)
		if err != nil {
			return err
		}
		defer stopStream()
	}
	if f.proxy {
		stop, err := runProxy(ctx, client, name, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info("starting the node agent", "node", name, "runtime", "cri", "endpoint", endpoint)
	return a.Run(ctx)
}

// runPodNetwork starts the pod network of --pod-network in the
// background; it stops with ctx.
func runPodNetwork(ctx context.Context, f *agentFlags, client kubernetes.Interface, name string, log *slog.Logger) error {
	if err := checkPodNetwork(f.podNetwork); err != nil || f.podNetwork == podnet.ModeNone {
		return err
	}
	pn, err := podnet.New(podnet.Config{Client: client, NodeName: name, Mode: f.podNetwork, ClusterCIDR: f.clusterCIDR,
		ServiceCIDR: f.serviceCIDR, Logger: log})
	if err != nil {
		return usageError{err}
	}
	go func() { _ = pn.Run(ctx) }()
	return nil
}

// checkPodNetwork checks a --pod-network value.
func checkPodNetwork(mode string) error {
	switch mode {
	case podnet.ModeNone, podnet.ModeHostGW, podnet.ModeVXLAN:
		return nil
	}
	return usageError{fmt.Errorf("--pod-network %q: use host-gw, vxlan or none", mode)}
}

// capacity is a simulated node's resources: --size, then --cpu, --memory
// and --ephemeral-storage over it, with defaults for what is left.
func (f *agentFlags) capacity() (corev1.ResourceList, error) {
	sz := agent.Size{CPU: "4", Memory: "8Gi", EphemeralStorage: "100Gi"}
	if f.size != "" {
		s, ok := agent.Sizes[f.size]
		if !ok {
			return nil, usageError{fmt.Errorf("--size %q: use one of %s", f.size, sizeNames())}
		}
		sz = s
	}
	for _, o := range []struct{ flag, dst *string }{{&f.cpu, &sz.CPU}, {&f.memory, &sz.Memory}, {&f.storage, &sz.EphemeralStorage}} {
		if *o.flag != "" {
			*o.dst = *o.flag
		}
	}
	if f.maxPods <= 0 {
		return nil, usageError{fmt.Errorf("--max-pods must be positive")}
	}
	res, err := agent.Resources(sz.CPU, sz.Memory, sz.EphemeralStorage, f.maxPods)
	if err != nil {
		return nil, usageError{err}
	}
	return res, nil
}

// restConfig builds the agent's client configuration from --kubeconfig or
// --server, --token and --ca-file.
func (f *agentFlags) restConfig(log *slog.Logger) (*rest.Config, error) {
	var cfg *rest.Config
	switch {
	case f.kubeconfig != "":
		if f.server != "" || f.token != "" {
			return nil, usageError{errors.New("give either --kubeconfig or --server and --token, not both")}
		}
		c, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("read kubeconfig %s: %w", f.kubeconfig, err)
		}
		cfg = c
	case f.server != "" && (f.token != "" || f.runtime == "cri"):
		// a CRI agent that has its node credentials needs no token
		cfg = &rest.Config{Host: f.server, BearerToken: f.token}
		switch {
		case f.caFile != "":
			ca, err := os.ReadFile(filepath.Clean(f.caFile))
			if err != nil {
				return nil, fmt.Errorf("read --ca-file: %w", err)
			}
			cfg.TLSClientConfig.CAData = ca
		case f.insecure:
			log.Warn("--insecure-skip-tls-verify: the server's identity is not checked; anyone on the path can read the token")
			cfg.TLSClientConfig.Insecure = true
		default:
			return nil, usageError{errors.New("--server needs --ca-file (the server's DATA_DIR/pki/ca.crt) to verify it, or --insecure-skip-tls-verify")}
		}
	default:
		return nil, usageError{errors.New("give --server and --token (with --ca-file), or --kubeconfig")}
	}
	cfg.UserAgent = "skiff-agent/" + Version
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	// leases every 10 s and status every 60 s per node, plus pod traffic
	qps := f.qps
	if qps <= 0 {
		qps = 50 + float64(f.nodes)/4
	}
	cfg.QPS, cfg.Burst = float32(qps), int(2*qps)
	return cfg, nil
}
