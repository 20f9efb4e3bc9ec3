// Package podstate answers the questions controllers ask about a pod:
// is it active, ready, available, and when did it become ready.
package podstate

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Active reports whether the pod counts towards its controller: it is
// neither finished nor being deleted.
func Active(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

// ReadyCondition returns the pod's Ready condition, or nil.
func ReadyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// Ready reports whether the pod's Ready condition is True.
func Ready(p *corev1.Pod) bool {
	c := ReadyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// Available reports whether the pod has been ready for at least
// minReadySeconds at now.
func Available(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	at, ok := AvailableAt(p, minReadySeconds)
	if !ok {
		return false
	}
	return minReadySeconds == 0 || (!ReadyCondition(p).LastTransitionTime.IsZero() && at.Before(now))
}

// AvailableAt returns when a ready pod becomes (or became) available;
// ok is false for a pod that is not ready.
func AvailableAt(p *corev1.Pod, minReadySeconds int32) (at time.Time, ok bool) {
	c := ReadyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue {
		return time.Time{}, false
	}
	return c.LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second), true
}

// MaxRestarts is the highest restart count of the pod's containers.
func MaxRestarts(p *corev1.Pod) int32 {
	var n int32
	for _, s := range p.Status.ContainerStatuses {
		n = max(n, s.RestartCount)
	}
	return n
}

// NextAvailable is how long from now until the first of pods that is
// ready but not yet available under minReadySeconds becomes available (a
// little after, so that a sync then sees it); 0 when none waits.
func NextAvailable(pods []*corev1.Pod, minReadySeconds int32, now time.Time) time.Duration {
	if minReadySeconds == 0 {
		return 0
	}
	var next time.Duration
	for _, p := range pods {
		at, ok := AvailableAt(p, minReadySeconds)
		if !ok || !at.After(now) {
			continue
		}
		if d := at.Sub(now) + 10*time.Millisecond; next == 0 || d < next {
			next = d
		}
	}
	return next
}
