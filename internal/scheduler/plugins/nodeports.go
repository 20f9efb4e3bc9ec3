package plugins

import (
	"context"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// NodePortsName is the plugin's name.
const NodePortsName = "NodePorts"

// ErrReasonNodePorts is the reason for a host port already in use.
const ErrReasonNodePorts = "node(s) didn't have free ports for the requested pod ports"

// NodePorts rejects nodes where a host port the pod asks for is taken
// (same port and protocol, and the same IP or either IP 0.0.0.0).
type NodePorts struct{}

// Name implements framework.Plugin.
func (NodePorts) Name() string { return NodePortsName }

const nodePortsKey = "PreFilter" + NodePortsName

type portsState []framework.HostPort

func (s portsState) Clone() framework.StateData { return s }

// PreFilter implements framework.PreFilterPlugin.
func (NodePorts) PreFilter(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, _ *framework.Snapshot) *framework.Status {
	ports := framework.PodHostPorts(pod.Pod)
	if len(ports) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	state.Write(nodePortsKey, portsState(ports))
	return nil
}

// Filter implements framework.FilterPlugin.
func (NodePorts) Filter(_ context.Context, state *framework.CycleState, _ *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	want, _ := state.Read(nodePortsKey).(portsState)
	for _, w := range want {
		for _, u := range node.UsedPorts {
			if w.Conflicts(u) {
				return framework.NewStatus(framework.Unschedulable, ErrReasonNodePorts)
			}
		}
	}
	return nil
}
