package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Runtime runs the pods of one node. The agent never calls it for the same
// pod from two goroutines at once, but does call it for different pods
// concurrently.
type Runtime interface {
	// Version names the runtime and its version as the node reports it
	// in status.nodeInfo.containerRuntimeVersion ("containerd://2.0.0",
	// "sim://v1.33.0-skiff").
	Version(ctx context.Context) (string, error)
	// SyncPod makes the pod's sandbox and containers match its spec: it
	// creates the sandbox, starts the containers that should run and
	// restarts exited ones as the restart policy says. It is idempotent and
	// returns what the runtime observes after acting. An error means
	// "retry with back-off"; the returned status, when not nil, is still
	// reported.
	SyncPod(ctx context.Context, pod *corev1.Pod) (*PodStatus, error)
	// KillPod stops the pod's containers, giving each up to gracePeriod to
	// exit, and releases its sandbox and IP. It returns the final status
	// (every container terminated). For pods the API no longer has, only
	// the pod's metadata (UID, namespace, name) is set.
	KillPod(ctx context.Context, pod *corev1.Pod, gracePeriod time.Duration) (*PodStatus, error)
	// ListPods returns the pods the runtime holds a sandbox or containers
	// for, so that the agent can adopt them after a restart and remove the
	// ones the API no longer has.
	ListPods(ctx context.Context) ([]PodRef, error)
	// ForgetPod drops what the runtime remembers of a killed pod.
	ForgetPod(ctx context.Context, uid types.UID) error
}

// PodRef identifies a pod the runtime holds.
type PodRef struct {
	UID             types.UID
	Namespace, Name string
}

// PodStatus is what the runtime observes of one pod.
type PodStatus struct {
	// SandboxReady is true when the pod's sandbox exists with its network
	// configured (the PodReadyToStartContainers condition).
	SandboxReady bool
	// IPs are the pod's IPs, primary family first.
	IPs []string
	// Containers holds the init and app containers the runtime has created,
	// one entry per container name (its latest attempt).
	Containers []ContainerStatus
	// RequeueAfter, when positive, asks the agent to sync the pod again
	// after this long even if nothing else changes (a container due to
	// exit, a back-off that ends).
	RequeueAfter time.Duration
}

// ContainerState is the state of a container's latest attempt.
type ContainerState string

// Container states, as the CRI reports them.
const (
	ContainerCreated ContainerState = "Created"
	ContainerRunning ContainerState = "Running"
	ContainerExited  ContainerState = "Exited"
	ContainerUnknown ContainerState = "Unknown"
)

// ContainerStatus is one container's latest attempt.
type ContainerStatus struct {
	Name string
	// ID is "<runtime>://<id>", e.g. "containerd://4f1c…" or "sim://…".
	ID    string
	State ContainerState
	// Image is the image as the pod names it; ImageID the resolved
	// digest reference.
	Image, ImageID        string
	StartedAt, FinishedAt time.Time
	// ExitCode, Reason and Message describe an exited container
	// (Reason "Completed", "Error", "OOMKilled").
	ExitCode        int32
	Reason, Message string
	RestartCount    int32
	// Previous is the attempt before this one, if it exited; it becomes
	// the container's lastState.
	Previous *ContainerStatus
	// Waiting, when set, says why the container is held back from running
	// (CrashLoopBackOff, ErrImagePull, ...).
	Waiting *corev1.ContainerStateWaiting
	// User is the identity the container's process runs as.
	User *corev1.ContainerUser
	// Started and Ready are the results of the container's startup and
	// readiness probes; nil means it has no such probe, so a running
	// container counts as started and ready.
	Started, Ready *bool
}

// Back-off of container restarts, as the kubelet's: the first exit
// restarts the container at once, the next ones wait 10 s doubling up to
// 5 min; a container that ran for RestartBackoffReset (twice the maximum,
// when the kubelet's back-off entry expires) restarts at once again.
const (
	RestartBackoffBase  = 10 * time.Second
	RestartBackoffMax   = 5 * time.Minute
	RestartBackoffReset = 2 * RestartBackoffMax
)

// RestartBackoff is how long a container that exited after restartCount
// restarts, having run for ran, waits before it starts again
// (CrashLoopBackOff meanwhile). Unlike the kubelet, which keeps its
// back-off in memory, it is computed from the restart count alone, so
// after a reset the next quick exit waits as long as the count says
// instead of 10 s.
func RestartBackoff(restartCount int32, ran time.Duration) time.Duration {
	if restartCount <= 0 || ran > RestartBackoffReset {
		return 0
	}
	return min(RestartBackoffBase<<min(restartCount-1, 10), RestartBackoffMax)
}

// ShouldRestart says whether a container that exited with exitCode
// restarts under the pod's restart policy.
func ShouldRestart(policy corev1.RestartPolicy, exitCode int32) bool {
	return policy == corev1.RestartPolicyAlways || policy == "" || (policy == corev1.RestartPolicyOnFailure && exitCode != 0)
}

// CrashLoopBackOff is the waiting state of a container held back from
// restarting until the back-off ends.
func CrashLoopBackOff(p *corev1.Pod, name string, backoff time.Duration) *corev1.ContainerStateWaiting {
	return &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
		Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
			backoff.Round(time.Second), name, p.Name, p.Namespace, p.UID)}
}

// ContainerUser is the identity container c of pod p runs as, from the
// pod's and the container's security contexts.
func ContainerUser(p *corev1.Pod, c *corev1.Container) *corev1.ContainerUser {
	var uid, gid int64
	if sc := p.Spec.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = *sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = *sc.RunAsGroup
		}
	}
	groups := []int64{gid}
	if sc := p.Spec.SecurityContext; sc != nil {
		groups = append(groups, sc.SupplementalGroups...)
	}
	return &corev1.ContainerUser{Linux: &corev1.LinuxContainerUser{UID: uid, GID: gid, SupplementalGroups: groups}}
}
