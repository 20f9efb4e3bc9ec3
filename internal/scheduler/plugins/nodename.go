package plugins

import (
	"context"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// NodeNameName is the plugin's name.
const NodeNameName = "NodeName"

// ErrReasonNodeName is the reason for a node other than spec.nodeName.
const ErrReasonNodeName = "node(s) didn't match the requested node name"

// NodeName rejects every node but the one a pod names in spec.nodeName.
type NodeName struct{}

// Name implements framework.Plugin.
func (NodeName) Name() string { return NodeNameName }

// Filter implements framework.FilterPlugin.
func (NodeName) Filter(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	if n := pod.Pod.Spec.NodeName; n != "" && n != node.Name() {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeName)
	}
	return nil
}
