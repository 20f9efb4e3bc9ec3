package plugins

import (
	"context"

	v1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// NodeReadyName is the plugin's name.
const NodeReadyName = "NodeReady"

// Reasons for nodes whose conditions forbid new pods.
const (
	ErrReasonNotReady           = "node(s) were not ready"
	ErrReasonNetworkUnavailable = "node(s) had unavailable network"
)

// NodeReady rejects nodes whose Ready condition is present and not True, or
// whose NetworkUnavailable condition is True. A node that reports no
// conditions yet is accepted, and a pod that tolerates the matching
// node.kubernetes.io/not-ready (or network-unavailable) taint is let through,
// as it would be where the node lifecycle controller taints such nodes.
type NodeReady struct{}

// Name implements framework.Plugin.
func (NodeReady) Name() string { return NodeReadyName }

// Filter implements framework.FilterPlugin.
func (NodeReady) Filter(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	for _, c := range node.Node().Status.Conditions {
		switch {
		case c.Type == v1.NodeReady && c.Status != v1.ConditionTrue:
			if !toleratesAny(pod.Pod.Spec.Tolerations, v1.TaintNodeNotReady) {
				return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNotReady)
			}
		case c.Type == v1.NodeNetworkUnavailable && c.Status == v1.ConditionTrue:
			if !toleratesAny(pod.Pod.Spec.Tolerations, v1.TaintNodeNetworkUnavailable) {
				return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNetworkUnavailable)
			}
		}
	}
	return nil
}

// toleratesAny reports whether the pod tolerates key with NoSchedule.
func toleratesAny(tols []v1.Toleration, key string) bool {
	return tolerates(tols, &v1.Taint{Key: key, Effect: v1.TaintEffectNoSchedule})
}
