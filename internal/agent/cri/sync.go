package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent"
)

// waitingError is a reason a container cannot start that is reported as
// its waiting state (ErrImageNeverPull, CreateContainerConfigError, ...)
// rather than retried at once.
type waitingError struct {
	reason, message string
}

func (e *waitingError) Error() string { return e.reason + ": " + e.message }

// SyncPod implements agent.Runtime: it makes sure the pod has a ready
// sandbox, runs its init containers in order and then its app containers,
// and restarts exited containers as the restart policy says, with the
// kubelet's back-off.
func (r *Runtime) SyncPod(ctx context.Context, p *corev1.Pod) (*agent.PodStatus, error) {
	sb, err := r.ensureSandbox(ctx, p)
	if err != nil {
		return nil, err
	}
	st := &agent.PodStatus{SandboxReady: sb.ready}
	ss, err := r.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.id})
	if err != nil {
		return nil, fmt.Errorf("status of sandbox %s: %w", sb.id, err)
	}
	if n := ss.Status.GetNetwork(); n != nil && !p.Spec.HostNetwork {
		if n.Ip != "" {
			st.IPs = append(st.IPs, n.Ip)
		}
		for _, ip := range n.AdditionalIps {
			st.IPs = append(st.IPs, ip.Ip)
		}
	}
	cs, err := r.podContainers(ctx, p.UID, sb.id)
	if err != nil {
		return nil, err
	}
	byName := attempts(cs)
	if !sb.ready {
		// a finished pod whose sandbox is stopped: nothing runs again
		st.Containers = containerStatuses(p, cs)
		return st, nil
	}
	var volumes map[string]string
	if len(p.Spec.Volumes) > 0 {
		if volumes, err = r.setupVolumes(ctx, p, r.volumesDue(p.UID, false)); err != nil {
			return st, fmt.Errorf("volumes of pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	now := time.Now()
	changed := false
	waiting := map[string]*corev1.ContainerStateWaiting{}
	var next time.Duration
	wake := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	// run decides what to do with one container: start it for the first
	// time, restart it after its back-off, or leave it.
	var errs []error
	run := func(c *corev1.Container) {
		list := byName[c.Name]
		var cur *runtimeapi.ContainerStatus
		if len(list) > 0 {
			cur = list[0]
		}
		switch {
		case cur == nil:
		case cur.State == runtimeapi.ContainerState_CONTAINER_RUNNING:
			return
		case cur.State == runtimeapi.ContainerState_CONTAINER_CREATED:
			// created but never started (the agent stopped in between)
			changed = true
			if _, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: cur.Id}); err != nil {
				errs = append(errs, fmt.Errorf("start container %s of pod %s/%s: %w", c.Name, p.Namespace, p.Name, err))
			}
			return
		default: // exited
			if !agent.ShouldRestart(p.Spec.RestartPolicy, cur.ExitCode) {
				return
			}
			var ran time.Duration // none if it never started (StartError)
			if cur.StartedAt > 0 {
				ran = time.Duration(cur.FinishedAt - cur.StartedAt)
			}
			delay := agent.RestartBackoff(int32(cur.Metadata.Attempt), ran)
			if until := time.Unix(0, cur.FinishedAt).Add(delay); now.Before(until) {
				waiting[c.Name] = agent.CrashLoopBackOff(p, c.Name, delay)
				r.event(p, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, p.Name, p.Namespace, p.UID)
				wake(until.Sub(now))
				return
			}
		}
		attempt := uint32(0)
		if cur != nil {
			attempt = cur.Metadata.Attempt + 1
		}
		changed = true
		err := r.startContainer(ctx, p, sb, c, attempt, st.IPs, volumes)
		var we *waitingError
		switch {
		case err == nil:
			// keep the attempt before the new one, for logs --previous
			for _, old := range list[min(1, len(list)):] {
				_ = r.removeContainer(ctx, old.Id) // with its log file: gc.go
			}
		case errors.As(err, &we):
			waiting[c.Name] = &corev1.ContainerStateWaiting{Reason: we.reason, Message: we.message}
			wake(agent.RestartBackoffBase)
		default:
			errs = append(errs, err)
		}
	}
	initialized := true
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		list := byName[c.Name]
		if len(list) > 0 && list[0].State == runtimeapi.ContainerState_CONTAINER_EXITED && list[0].ExitCode == 0 {
			continue
		}
		initialized = false
		if len(list) > 0 && list[0].State == runtimeapi.ContainerState_CONTAINER_EXITED &&
			p.Spec.RestartPolicy == corev1.RestartPolicyNever {
			break // the pod has failed
		}
		run(c)
		break
	}
	if initialized {
		for i := range p.Spec.Containers {
			run(&p.Spec.Containers[i])
		}
	}
	// read back what the runtime has now
	if changed {
		if cs, err = r.podContainers(ctx, p.UID, sb.id); err != nil {
			return nil, err
		}
		byName = attempts(cs)
	}
	st.Containers = containerStatuses(p, cs)
	if podDone(p, byName) {
		// as the kubelet: a pod that has finished gives back its sandbox
		// and IP; its containers and logs stay until it is deleted
		r.probes.forget(p.UID)
		if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.id}); err != nil {
			return st, fmt.Errorf("stop sandbox of finished pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		st.SandboxReady = false
		return st, nil
	}
	podIP := ""
	if len(st.IPs) > 0 {
		podIP = st.IPs[0]
	}
	r.probes.sync(p, cs, podIP)
	for i := range st.Containers {
		c := &st.Containers[i]
		if w := waiting[c.Name]; w != nil {
			c.Waiting = w
		}
		c.Started, c.Ready = r.probes.results(strings.TrimPrefix(c.ID, "containerd://"))
		if c.State == agent.ContainerRunning || c.State == agent.ContainerCreated {
			wake(pollInterval)
		}
	}
	for name, w := range waiting {
		if findContainer(st.Containers, name) == nil {
			st.Containers = append(st.Containers, agent.ContainerStatus{Name: name, State: agent.ContainerUnknown, Waiting: w})
		}
	}
	if !initialized && len(errs) == 0 {
		wake(pollInterval)
	}
	st.RequeueAfter = next
	if len(errs) > 0 {
		return st, errs[0]
	}
	return st, nil
}

func findContainer(cs []agent.ContainerStatus, name string) *agent.ContainerStatus {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

// attempts groups containers by name, latest attempt first.
func attempts(cs []*runtimeapi.ContainerStatus) map[string][]*runtimeapi.ContainerStatus {
	out := map[string][]*runtimeapi.ContainerStatus{}
	for _, c := range cs {
		out[c.Metadata.Name] = append(out[c.Metadata.Name], c)
	}
	for _, l := range out {
		sort.Slice(l, func(i, j int) bool { return l[i].Metadata.Attempt > l[j].Metadata.Attempt })
	}
	return out
}

// sandbox is the pod's current sandbox.
type sandbox struct {
	id     string
	config *runtimeapi.PodSandboxConfig
	// ready is false for the stopped sandbox of a pod that has finished.
	ready bool
}

// podDone says whether the pod has finished for good: an init container
// failed under restartPolicy Never, or every app container has exited and
// none restarts.
func podDone(p *corev1.Pod, byName map[string][]*runtimeapi.ContainerStatus) bool {
	exited := func(name string) *runtimeapi.ContainerStatus {
		if l := byName[name]; len(l) > 0 && l[0].State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return l[0]
		}
		return nil
	}
	for i := range p.Spec.InitContainers {
		if c := exited(p.Spec.InitContainers[i].Name); c != nil && c.ExitCode != 0 && p.Spec.RestartPolicy == corev1.RestartPolicyNever {
			return true
		}
	}
	for i := range p.Spec.Containers {
		c := exited(p.Spec.Containers[i].Name)
		if c == nil || agent.ShouldRestart(p.Spec.RestartPolicy, c.ExitCode) {
			return false
		}
	}
	return len(p.Spec.Containers) > 0
}

// ensureSandbox returns the pod's ready sandbox, creating it (and removing
// sandboxes that are no longer ready) when there is none.
func (r *Runtime) ensureSandbox(ctx context.Context, p *corev1.Pod) (*sandbox, error) {
	sbs, err := r.sandboxes(ctx, p.UID)
	if err != nil {
		return nil, err
	}
	var attempt uint32
	for i, sb := range sbs {
		if i == 0 {
			cur := &sandbox{id: sb.Id, config: r.podSandboxConfig(p, sb.Metadata.Attempt),
				ready: sb.State == runtimeapi.PodSandboxState_SANDBOX_READY}
			if cur.ready {
				return cur, nil
			}
			cs, err := r.containers(ctx, sb.Id)
			if err != nil {
				return nil, err
			}
			if podDone(p, attempts(cs)) {
				return cur, nil
			}
		}
		attempt = max(attempt, sb.Metadata.Attempt+1)
	}
	// the latest old sandbox stays (stopped) until the next change, so
	// that its exited containers carry the restart count and lastState
	// into the new one
	if len(sbs) > 0 {
		if _, err := r.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sbs[0].Id}); err != nil {
			return nil, fmt.Errorf("stop sandbox %s: %w", sbs[0].Id, err)
		}
	}
	for _, sb := range sbs[min(1, len(sbs)):] {
		r.log.Info("removing an old sandbox", "pod", p.Namespace+"/"+p.Name, "sandbox", sb.Id)
		if err := r.removeSandbox(ctx, sb.Id); err != nil {
			return nil, err
		}
	}
	if !p.Spec.HostNetwork && !r.hasCIDR() {
		return nil, fmt.Errorf("sandbox of pod %s/%s: %w", p.Namespace, p.Name, agent.ErrNoPodCIDR)
	}
	cfg, err := r.newSandboxConfig(ctx, p, attempt)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.LogDirectory, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	resp, err := r.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		r.event(p, corev1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return nil, fmt.Errorf("run sandbox of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	r.log.Debug("sandbox started", "pod", p.Namespace+"/"+p.Name, "sandbox", resp.PodSandboxId)
	return &sandbox{id: resp.PodSandboxId, config: cfg}, nil
}

// startContainer makes sure the image is there, then creates and starts
// one attempt of container c.
func (r *Runtime) startContainer(ctx context.Context, p *corev1.Pod, sb *sandbox, c *corev1.Container, attempt uint32, podIPs []string, volumes map[string]string) error {
	if err := r.ensureImage(ctx, p, c); err != nil {
		return err
	}
	cfg, err := containerConfig(ctx, apiRefs{client: r.cfg.Client, cluster: r.cluster}, p, c, attempt, podIPs, r.cfg.HostIPs)
	if err == nil {
		cfg.Mounts, err = mounts(p, c, volumes)
	}
	if err == nil {
		var hosts *runtimeapi.Mount
		if hosts, err = r.hostsMount(p, c, podIPs); hosts != nil {
			cfg.Mounts = append(cfg.Mounts, hosts)
		}
	}
	if err != nil {
		r.event(p, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return &waitingError{reason: "CreateContainerConfigError", message: err.Error()}
	}
	if err := os.MkdirAll(filepath.Join(sb.config.LogDirectory, c.Name), 0o755); err != nil {
		return fmt.Errorf("log directory of container %s: %w", c.Name, err)
	}
	created, err := r.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.id, Config: cfg, SandboxConfig: sb.config})
	if err != nil {
		r.event(p, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return &waitingError{reason: "CreateContainerError", message: err.Error()}
	}
	r.event(p, corev1.EventTypeNormal, "Created", "Created container %s", c.Name)
	if _, err := r.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: created.ContainerId}); err != nil {
		r.event(p, corev1.EventTypeWarning, "Failed", "Error: %v", err)
		return fmt.Errorf("start container %s of pod %s/%s: %w", c.Name, p.Namespace, p.Name, err)
	}
	r.event(p, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		podIP := ""
		if len(podIPs) > 0 {
			podIP = podIPs[0]
		}
		// as the kubelet: a failed postStart hook kills the container,
		// which then restarts as the restart policy says
		if err := r.hook(ctx, c, created.ContainerId, podIP, 30*time.Second, c.Lifecycle.PostStart); err != nil {
			r.event(p, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", err)
			_, _ = r.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: created.ContainerId, Timeout: 0})
		}
	}
	r.log.Debug("container started", "pod", p.Namespace+"/"+p.Name, "container", c.Name, "attempt", attempt, "id", created.ContainerId)
	return nil
}

// ensureImage pulls the container's image as its imagePullPolicy says.
func (r *Runtime) ensureImage(ctx context.Context, p *corev1.Pod, c *corev1.Container) error {
	spec := &runtimeapi.ImageSpec{Image: c.Image}
	if c.ImagePullPolicy != corev1.PullAlways {
		st, err := r.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec})
		if err != nil {
			return fmt.Errorf("status of image %s: %w", c.Image, err)
		}
		if st.Image != nil {
			r.event(p, corev1.EventTypeNormal, "Pulled", "Container image %q already present on machine", c.Image)
			return nil
		}
		if c.ImagePullPolicy == corev1.PullNever {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", c.Image)
			r.event(p, corev1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
			return &waitingError{reason: "ErrImageNeverPull", message: msg}
		}
	}
	return r.pullImage(ctx, p, c) // with pull secrets and back-off: see imagepull.go
}

// containerStatuses converts the CRI's containers into the agent's view:
// per container name the latest attempt, with the one before as Previous.
func containerStatuses(p *corev1.Pod, cs []*runtimeapi.ContainerStatus) []agent.ContainerStatus {
	specs := map[string]*corev1.Container{}
	for i := range p.Spec.InitContainers {
		specs[p.Spec.InitContainers[i].Name] = &p.Spec.InitContainers[i]
	}
	for i := range p.Spec.Containers {
		specs[p.Spec.Containers[i].Name] = &p.Spec.Containers[i]
	}
	var out []agent.ContainerStatus
	for name, list := range attempts(cs) {
		st := convert(list[0], specs[name], p)
		if len(list) > 1 && list[1].State == runtimeapi.ContainerState_CONTAINER_EXITED {
			prev := convert(list[1], specs[name], p)
			st.Previous = &prev
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// convert is one CRI container status as the agent sees it.
func convert(c *runtimeapi.ContainerStatus, spec *corev1.Container, p *corev1.Pod) agent.ContainerStatus {
	st := agent.ContainerStatus{Name: c.Metadata.Name, ID: "containerd://" + c.Id,
		Image: c.GetImage().GetImage(), ImageID: c.ImageRef, RestartCount: int32(c.Metadata.Attempt),
		ExitCode: c.ExitCode, Reason: c.Reason, Message: c.Message}
	if spec != nil {
		st.Image = spec.Image
		st.User = agent.ContainerUser(p, spec)
	}
	if c.StartedAt > 0 {
		st.StartedAt = time.Unix(0, c.StartedAt)
	}
	if c.FinishedAt > 0 {
		st.FinishedAt = time.Unix(0, c.FinishedAt)
	}
	switch c.State {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		st.State = agent.ContainerCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		st.State = agent.ContainerRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		st.State = agent.ContainerExited
		if st.Reason == "" {
			st.Reason = "Completed"
			if st.ExitCode != 0 {
				st.Reason = "Error"
			}
		}
	default:
		st.State = agent.ContainerUnknown
	}
	return st
}
