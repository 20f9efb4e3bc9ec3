// Package cri is the node agent's container runtime on a CRI endpoint
// (containerd): it implements agent.Runtime by running each pod as a CRI
// sandbox on skiff's CNI network (bridge + host-local IPAM on the node's
// pod CIDR, portmap, loopback) and its containers in it, and reads the
// pods back from the sandboxes' labels after the agent restarts.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent"
)

// Labels the runtime puts on sandboxes and containers, as the kubelet does.
const (
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelContainerName = "io.kubernetes.container.name"
)

// pollInterval is how often a pod with live containers is synced again to
// notice exits (the kubelet's PLEG relists every second).
const pollInterval = 2 * time.Second

// Config configures a CRI runtime.
type Config struct {
	// Endpoint is the CRI socket ("unix:///run/containerd/containerd.sock")
	// (required).
	Endpoint string
	// CNIConfDir, when set, is where the runtime writes the pod network's
	// conflist once it knows the node's pod CIDR; empty leaves the network
	// configuration to someone else.
	CNIConfDir string
	// CNIDataDir is where host-local keeps its IP allocations; empty means
	// the plugin's default (/var/lib/cni/networks).
	CNIDataDir string
	// Bridge is the name of the pods' bridge; empty means "skiff0".
	Bridge string
	// PodCIDR is the node's pod CIDR until UpdatePodCIDR says otherwise.
	PodCIDR string
	// PodLogDir holds the containers' logs, one directory per pod
	// (NAMESPACE_NAME_UID/CONTAINER/ATTEMPT.log); empty means /var/log/pods.
	PodLogDir string
	// VolumeDir holds the pods' volumes, one directory per pod UID;
	// empty means /var/lib/skiff-agent/volumes.
	VolumeDir string
	// HostIPs are the node's IPs, for the status.hostIP(s) field references.
	HostIPs []string
	// Recorder receives the pods' events (Pulled, Created, Started,
	// Killing, BackOff, Unhealthy, ...), as the kubelet's; nil records none.
	Recorder record.EventRecorder
	// Client reads the ConfigMaps and Secrets containers' env refers to;
	// nil makes such containers fail with CreateContainerConfigError.
	Client kubernetes.Interface
	// ClusterDNS are the pods' cluster DNS servers (empty: the cluster IP
	// of kube-system/kube-dns); ClusterDomain is the cluster's domain
	// (empty: cluster.local); ResolvConf is the node's resolv.conf, which
	// pods with dnsPolicy Default get (empty: /etc/resolv.conf). See dns.go.
	ClusterDNS                []string
	ClusterDomain, ResolvConf string
	// ImageGCHighThreshold and ImageGCLowThreshold are percentages of
	// the image file system (see GarbageCollect); 0 means 85 and 80,
	// a high threshold of 100 disables image collection.
	ImageGCHighThreshold, ImageGCLowThreshold int
	// Logger receives the runtime's logs.
	Logger *slog.Logger
}

// Runtime runs pods through CRI. It implements agent.Runtime and
// agent.PodCIDRUpdater.
type Runtime struct {
	cfg  Config
	log  *slog.Logger
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
	img  runtimeapi.ImageServiceClient

	probes  *prober
	cluster *cluster // services, cluster DNS: see dns.go

	pulls pullBackoff // image pull back-off: see imagepull.go

	mu        sync.Mutex
	podCIDR   string
	volumesAt map[types.UID]time.Time // when each pod's volumes were last written
	tokens    tokenCache              // service-account tokens of projected volumes: see satoken.go

	stats statsCache // see stats.go
	gc    gcState    // see gc.go
}

// New connects to the CRI endpoint (lazily: the first call dials) and
// writes the pod network's configuration if the pod CIDR is known.
func New(cfg Config) (*Runtime, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("cri: no endpoint")
	}
	if cfg.Bridge == "" {
		cfg.Bridge = "skiff0"
	}
	if cfg.PodLogDir == "" {
		cfg.PodLogDir = "/var/log/pods"
	}
	if cfg.VolumeDir == "" {
		cfg.VolumeDir = "/var/lib/skiff-agent/volumes"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.defaultImageGC(); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("cri: connect %s: %w", cfg.Endpoint, err)
	}
	r := &Runtime{cfg: cfg, log: cfg.Logger.With("component", "cri"), conn: conn, volumesAt: map[types.UID]time.Time{},
		rt: runtimeapi.NewRuntimeServiceClient(conn), img: runtimeapi.NewImageServiceClient(conn)}
	r.probes = newProber(r)
	r.cluster = newCluster(cfg, r.log)
	if cfg.PodCIDR != "" {
		if err := r.UpdatePodCIDR(cfg.PodCIDR); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return r, nil
}

// event records an event about the pod.
func (r *Runtime) event(p *corev1.Pod, typ, reason, format string, args ...any) {
	if r.cfg.Recorder != nil && p.Name != "" {
		r.cfg.Recorder.Eventf(p, typ, reason, format, args...)
	}
}

// Close closes the connection to the CRI endpoint.
func (r *Runtime) Close() error {
	r.cluster.stop()
	return r.conn.Close()
}

// Version implements agent.Runtime ("containerd://1.6.20").
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", fmt.Errorf("cri version: %w", err)
	}
	return v.RuntimeName + "://" + v.RuntimeVersion, nil
}

// UpdatePodCIDR implements agent.PodCIDRUpdater: it writes the pod
// network's conflist for cidr.
func (r *Runtime) UpdatePodCIDR(cidr string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cidr == r.podCIDR {
		return nil
	}
	if r.cfg.CNIConfDir != "" {
		if err := writeCNIConfig(r.cfg.CNIConfDir, r.cfg.Bridge, cidr, r.cfg.CNIDataDir); err != nil {
			return err
		}
	}
	r.podCIDR = cidr
	r.log.Info("pod network configured", "podCIDR", cidr, "bridge", r.cfg.Bridge)
	return nil
}

func (r *Runtime) hasCIDR() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.podCIDR != "" || r.cfg.CNIConfDir == ""
}

// ListPods implements agent.Runtime: the pods that have a sandbox.
func (r *Runtime) ListPods(ctx context.Context) ([]agent.PodRef, error) {
	resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	seen := map[types.UID]bool{}
	var out []agent.PodRef
	for _, sb := range resp.Items {
		uid := types.UID(sb.Labels[LabelPodUID])
		if uid == "" || seen[uid] {
			continue
		}
		seen[uid] = true
		out = append(out, agent.PodRef{UID: uid, Namespace: sb.Labels[LabelPodNamespace], Name: sb.Labels[LabelPodName]})
	}
	return out, nil
}

// sandboxes returns the pod's sandboxes, newest first.
func (r *Runtime) sandboxes(ctx context.Context, uid types.UID) ([]*runtimeapi.PodSandbox, error) {
	resp, err := r.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{LabelPodUID: string(uid)}}})
	if err != nil {
		return nil, fmt.Errorf("list sandboxes of pod %s: %w", uid, err)
	}
	sbs := resp.Items
	sort.Slice(sbs, func(i, j int) bool { return sbs[i].CreatedAt > sbs[j].CreatedAt })
	return sbs, nil
}

// containers returns the full status of every container of a sandbox.
func (r *Runtime) containers(ctx context.Context, sandboxID string) ([]*runtimeapi.ContainerStatus, error) {
	resp, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: sandboxID}})
	if err != nil {
		return nil, fmt.Errorf("list containers of sandbox %s: %w", sandboxID, err)
	}
	out := make([]*runtimeapi.ContainerStatus, 0, len(resp.Containers))
	for _, c := range resp.Containers {
		st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
		if err != nil {
			return nil, fmt.Errorf("status of container %s: %w", c.Id, err)
		}
		out = append(out, st.Status)
	}
	return out, nil
}

// podContainers returns the containers of the pod's current sandbox and
// the exited ones of its earlier sandbox, whose attempts the new ones
// continue.
func (r *Runtime) podContainers(ctx context.Context, uid types.UID, sandboxID string) ([]*runtimeapi.ContainerStatus, error) {
	resp, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{LabelPodUID: string(uid)}}})
	if err != nil {
		return nil, fmt.Errorf("list containers of pod %s: %w", uid, err)
	}
	out := make([]*runtimeapi.ContainerStatus, 0, len(resp.Containers))
	for _, c := range resp.Containers {
		if c.PodSandboxId != sandboxID && c.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			continue
		}
		st, err := r.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id})
		if err != nil {
			return nil, fmt.Errorf("status of container %s: %w", c.Id, err)
		}
		out = append(out, st.Status)
	}
	return out, nil
}

// KillPod implements agent.Runtime: it stops every container of the pod
// with the grace period, then its sandboxes (which releases the pod's IP).
// The sandboxes stay until ForgetPod, so their containers' logs do too.
func (r *Runtime) KillPod(ctx context.Context, p *corev1.Pod, grace time.Duration) (*agent.PodStatus, error) {
	r.probes.forget(p.UID)
	sbs, err := r.sandboxes(ctx, p.UID)
	if err != nil {
		return nil, err
	}
	st := &agent.PodStatus{}
	for i, sb := range sbs {
		if err := r.stopSandbox(ctx, p, sb.Id, grace); err != nil {
			return nil, err
		}
		if i == 0 {
			cs, err := r.containers(ctx, sb.Id)
			if err != nil {
				return nil, err
			}
			st.Containers = containerStatuses(p, cs)
		}
	}
	return st, nil
}

// stopSandbox stops a sandbox's containers in parallel, each with the
// grace period, and then the sandbox.
func (r *Runtime) stopSandbox(ctx context.Context, p *corev1.Pod, id string, grace time.Duration) error {
	resp, err := r.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: id}})
	if err != nil {
		return fmt.Errorf("list containers of sandbox %s: %w", id, err)
	}
	podIP := ""
	if st, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id}); err == nil {
		podIP = st.Status.GetNetwork().GetIp()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(resp.Containers))
	for i, c := range resp.Containers {
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		r.event(p, corev1.EventTypeNormal, "Killing", "Stopping container %s", c.Metadata.Name)
		spec := findSpecContainer(p, c.Metadata.Name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := grace
			if spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil {
				// the preStop hook runs within the grace period; the
				// container gets what is left, at least 2 s, as upstream
				start := time.Now()
				if err := r.hook(ctx, spec, c.Id, podIP, grace, spec.Lifecycle.PreStop); err != nil {
					r.event(p, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
				}
				timeout = max(grace-time.Since(start), 2*time.Second)
			}
			_, err := r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id, Timeout: int64(timeout.Seconds())})
			if err != nil {
				errs[i] = fmt.Errorf("stop container %s: %w", c.Id, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", id, err)
	}
	return nil
}

// ForgetPod implements agent.Runtime: it removes the pod's sandboxes with
// their containers and logs, and its volumes.
func (r *Runtime) ForgetPod(ctx context.Context, uid types.UID) error {
	r.probes.forget(uid)
	sbs, err := r.sandboxes(ctx, uid)
	if err != nil {
		return err
	}
	for _, sb := range sbs {
		if err := r.removeSandbox(ctx, sb.Id); err != nil {
			return err
		}
		_ = os.RemoveAll(filepath.Join(r.cfg.PodLogDir, logDirName(sb.Metadata.Namespace, sb.Metadata.Name, sb.Metadata.Uid)))
	}
	return r.removeVolumes(uid)
}

func (r *Runtime) removeSandbox(ctx context.Context, id string) error {
	if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", id, err)
	}
	if _, err := r.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	return nil
}

func logDirName(namespace, name, uid string) string {
	return namespace + "_" + name + "_" + uid
}

// LogPath is the log file of one attempt of a container.
func (r *Runtime) LogPath(p *corev1.Pod, container string, attempt int32) string {
	return filepath.Join(r.cfg.PodLogDir, logDirName(p.Namespace, p.Name, string(p.UID)), container, strconv.Itoa(int(attempt))+".log")
}
