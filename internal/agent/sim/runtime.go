// Package sim is the simulated container runtime: it runs no containers
// but reports pods the way a real node does (sandbox, IPs from the node's
// pod CIDR, running containers, exits and restarts), and hosts many
// simulated nodes in one process for benchmarks and control-plane tests.
//
// Pods steer the simulation with annotations:
//
//	sim.skiff.dev/exit-after: 2s   app containers exit 2 s after they start
//	sim.skiff.dev/exit-code: "1"   ... with this exit code (default 0)
//	sim.skiff.dev/cpu-usage: 250m  each running app container uses 250m CPU (default 1m)
//	sim.skiff.dev/memory-usage: 64Mi  ... and 64Mi of memory (default 4Mi)
//
// Exited containers restart as the pod's restartPolicy says, with the
// kubelet's back-off (CrashLoopBackOff).
package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/agent"
)

// Annotations that steer simulated pods.
const (
	AnnotationExitAfter = "sim.skiff.dev/exit-after"
	AnnotationExitCode  = "sim.skiff.dev/exit-code"
)

// Runtime is the simulated runtime of one node. It implements
// agent.Runtime, agent.PodCIDRUpdater and agent.StatsProvider.
type Runtime struct {
	clock clock.Clock

	mu   sync.Mutex
	cidr netip.Prefix
	used map[netip.Addr]bool
	pods map[types.UID]*pod
}

// pod is a simulated sandbox and its containers.
type pod struct {
	ref        agent.PodRef
	ip         netip.Addr
	containers map[string]*container
}

// container is the latest attempt of one simulated container.
type container struct {
	agent.ContainerStatus
	backoffUntil time.Time
}

// NewRuntime returns a simulated runtime that gives pods IPs from cidr
// until the node's spec.podCIDR says otherwise. A nil clock means the real
// one.
func NewRuntime(cidr netip.Prefix, clk clock.Clock) *Runtime {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Runtime{clock: clk, cidr: cidr.Masked(), used: map[netip.Addr]bool{}, pods: map[types.UID]*pod{}}
}

// Version implements agent.Runtime.
func (r *Runtime) Version(context.Context) (string, error) {
	return "sim://" + agent.KubeletVersion, nil
}

// UpdatePodCIDR implements agent.PodCIDRUpdater: new pods get IPs from cidr.
func (r *Runtime) UpdatePodCIDR(cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("pod CIDR %q: %w", cidr, err)
	}
	r.mu.Lock()
	r.cidr = p.Masked()
	r.mu.Unlock()
	return nil
}

// allocate returns a free IP of the CIDR, skipping the network address,
// the gateway (.1) and the broadcast address.
func (r *Runtime) allocate() (netip.Addr, error) {
	if !r.cidr.IsValid() {
		return netip.Addr{}, fmt.Errorf("no pod CIDR")
	}
	bits := r.cidr.Addr().BitLen() - r.cidr.Bits()
	size := uint64(1) << min(bits, 20)
	a := r.cidr.Addr().Next()
	for i := uint64(2); i+1 < size; i++ {
		a = a.Next()
		if !r.used[a] {
			r.used[a] = true
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s is full", r.cidr)
}

func containerID(uid types.UID, name string, attempt int32) string {
	sum := sha256.Sum256([]byte(string(uid) + "/" + name + "/" + strconv.Itoa(int(attempt))))
	return "sim://" + hex.EncodeToString(sum[:])
}

// imageID is a digest reference for an image name, as containerd reports
// one ("repo@sha256:…").
func imageID(image string) string {
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	} else if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	sum := sha256.Sum256([]byte(image))
	return repo + "@sha256:" + hex.EncodeToString(sum[:])
}

// exitRule reads the pod's exit annotations.
func exitRule(p *corev1.Pod) (after time.Duration, code int32, ok bool) {
	v, found := p.Annotations[AnnotationExitAfter]
	if !found {
		return 0, 0, false
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, 0, false
	}
	if c, err := strconv.ParseInt(p.Annotations[AnnotationExitCode], 10, 32); err == nil {
		code = int32(c)
	}
	return d, code, true
}

// SyncPod implements agent.Runtime: it creates the sandbox, completes
// init containers, starts app containers, and applies exits and restarts.
func (r *Runtime) SyncPod(_ context.Context, p *corev1.Pod) (*agent.PodStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.clock.Now()
	sp := r.pods[p.UID]
	if sp == nil {
		sp = &pod{ref: agent.PodRef{UID: p.UID, Namespace: p.Namespace, Name: p.Name}, containers: map[string]*container{}}
		if !p.Spec.HostNetwork {
			ip, err := r.allocate()
			if err != nil {
				return nil, fmt.Errorf("sandbox of pod %s/%s: %w", p.Namespace, p.Name, err)
			}
			sp.ip = ip
		}
		r.pods[p.UID] = sp
	}
	var next time.Duration
	wake := func(at time.Time) {
		if d := at.Sub(now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	start := func(c *corev1.Container, prev *container) *container {
		n := &container{ContainerStatus: agent.ContainerStatus{Name: c.Name, State: agent.ContainerRunning,
			Image: c.Image, ImageID: imageID(c.Image), StartedAt: now, User: agent.ContainerUser(p, c)}}
		if prev != nil {
			n.RestartCount = prev.RestartCount + 1
			last := prev.ContainerStatus
			last.Previous, last.Waiting = nil, nil
			n.Previous = &last
		}
		n.ID = containerID(p.UID, c.Name, n.RestartCount)
		sp.containers[c.Name] = n
		return n
	}
	// init containers run one after another and complete at once
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		cur := sp.containers[c.Name]
		if cur == nil {
			cur = start(c, nil)
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				cur.State, cur.FinishedAt, cur.Reason = agent.ContainerExited, now, "Completed"
			}
		}
	}
	after, code, exits := exitRule(p)
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		cur := sp.containers[c.Name]
		if cur == nil {
			cur = start(c, nil)
		}
		if cur.State == agent.ContainerRunning && exits {
			if end := cur.StartedAt.Add(after); !now.Before(end) {
				cur.State, cur.FinishedAt, cur.ExitCode = agent.ContainerExited, end, code
				cur.Reason = "Completed"
				if code != 0 {
					cur.Reason = "Error"
				}
				delay := agent.RestartBackoff(cur.RestartCount, end.Sub(cur.StartedAt))
				cur.backoffUntil = end.Add(delay)
			} else {
				wake(end)
			}
		}
		if cur.State != agent.ContainerExited || !agent.ShouldRestart(p.Spec.RestartPolicy, cur.ExitCode) {
			continue
		}
		if now.Before(cur.backoffUntil) {
			cur.Waiting = agent.CrashLoopBackOff(p, c.Name, cur.backoffUntil.Sub(cur.FinishedAt))
			wake(cur.backoffUntil)
			continue
		}
		n := start(c, cur)
		if exits {
			wake(n.StartedAt.Add(after))
		}
	}
	return sp.status(next), nil
}

// status reports the pod as the agent wants it.
func (sp *pod) status(requeue time.Duration) *agent.PodStatus {
	st := &agent.PodStatus{SandboxReady: true, RequeueAfter: requeue}
	if sp.ip.IsValid() {
		st.IPs = []string{sp.ip.String()}
	}
	for _, c := range sp.containers {
		cs := c.ContainerStatus
		if cs.Previous != nil {
			prev := *cs.Previous
			cs.Previous = &prev
		}
		st.Containers = append(st.Containers, cs)
	}
	return st
}

// KillPod implements agent.Runtime: running containers stop at once with
// exit code 0 and the sandbox and its IP are released.
func (r *Runtime) KillPod(_ context.Context, p *corev1.Pod, _ time.Duration) (*agent.PodStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sp := r.pods[p.UID]
	if sp == nil {
		return &agent.PodStatus{}, nil
	}
	now := r.clock.Now()
	for _, c := range sp.containers {
		c.Waiting = nil
		if c.State != agent.ContainerExited {
			c.State, c.FinishedAt, c.ExitCode, c.Reason = agent.ContainerExited, now, 0, "Completed"
		}
	}
	if sp.ip.IsValid() {
		delete(r.used, sp.ip)
	}
	st := sp.status(0)
	st.SandboxReady = false
	return st, nil
}

// ForgetPod implements agent.Runtime.
func (r *Runtime) ForgetPod(_ context.Context, uid types.UID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sp := r.pods[uid]; sp != nil && sp.ip.IsValid() {
		delete(r.used, sp.ip)
	}
	delete(r.pods, uid)
	return nil
}

// ListPods implements agent.Runtime.
func (r *Runtime) ListPods(context.Context) ([]agent.PodRef, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]agent.PodRef, 0, len(r.pods))
	for _, sp := range r.pods {
		out = append(out, sp.ref)
	}
	return out, nil
}

// NodeCIDR is the pod range of simulated node i when its Node has no
// spec.podCIDR: the i-th /24 of 10.244.0.0/14 and on (10.244.<i>.0/24 for
// the first 256 nodes).
func NodeCIDR(i int) netip.Prefix {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 10<<24|244<<16+uint32(i)<<8)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24)
}

// NodeIP is the InternalIP of simulated node i: 172.16.0.0/12 plus i+1.
// Nothing routes to it; it is only reported.
func NodeIP(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 172<<24|16<<16+uint32(i)+1)
	return netip.AddrFrom4(b)
}
