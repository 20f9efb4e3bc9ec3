package plugins

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// NodeResourcesFitName is the plugin's name.
const NodeResourcesFitName = "NodeResourcesFit"

// ErrReasonTooManyPods is the reason for a node at its pod limit.
const ErrReasonTooManyPods = "Too many pods"

// Scoring strategies of NodeResourcesFit.
const (
	// LeastAllocated prefers the emptiest nodes (spreading).
	LeastAllocated = "LeastAllocated"
	// MostAllocated prefers the fullest nodes (bin-packing).
	MostAllocated = "MostAllocated"
)

// ResourceWeight is a resource and its weight in a resource score.
type ResourceWeight struct {
	Name   v1.ResourceName `json:"name"`
	Weight int64           `json:"weight"`
}

// DefaultResources are cpu and memory, weight 1 each.
var defaultResources = []ResourceWeight{{Name: v1.ResourceCPU, Weight: 1}, {Name: v1.ResourceMemory, Weight: 1}}

// NodeResourcesFit rejects nodes without room for the pod's requests (cpu,
// memory, ephemeral-storage, extended resources, pod count) and scores the
// rest by the configured strategy.
type NodeResourcesFit struct {
	// Strategy is LeastAllocated (default) or MostAllocated.
	Strategy string
	// Resources weighs the resources scored; default cpu and memory.
	Resources []ResourceWeight
}

// NewNodeResourcesFit validates the strategy.
func NewNodeResourcesFit(strategy string, resources []ResourceWeight) (*NodeResourcesFit, error) {
	switch strategy {
	case "":
		strategy = LeastAllocated
	case LeastAllocated, MostAllocated:
	default:
		return nil, fmt.Errorf("unknown scoring strategy %q (want %s or %s)", strategy, LeastAllocated, MostAllocated)
	}
	if len(resources) == 0 {
		resources = defaultResources
	}
	for _, r := range resources {
		if r.Weight <= 0 || r.Weight > 100 {
			return nil, fmt.Errorf("resource %s: weight %d out of range 1..100", r.Name, r.Weight)
		}
	}
	return &NodeResourcesFit{Strategy: strategy, Resources: resources}, nil
}

// Name implements framework.Plugin.
func (*NodeResourcesFit) Name() string { return NodeResourcesFitName }

// Filter implements framework.FilterPlugin.
func (*NodeResourcesFit) Filter(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	var reasons []string
	if int64(len(node.Pods))+1 > node.Allocatable.AllowedPodNumber {
		reasons = append(reasons, ErrReasonTooManyPods)
	}
	req, alloc, used := &pod.Requests, &node.Allocatable, &node.Requested
	if req.MilliCPU > 0 && req.MilliCPU > alloc.MilliCPU-used.MilliCPU {
		reasons = append(reasons, "Insufficient cpu")
	}
	if req.Memory > 0 && req.Memory > alloc.Memory-used.Memory {
		reasons = append(reasons, "Insufficient memory")
	}
	if req.EphemeralStorage > 0 && req.EphemeralStorage > alloc.EphemeralStorage-used.EphemeralStorage {
		reasons = append(reasons, "Insufficient ephemeral-storage")
	}
	for name, v := range req.Scalar {
		if v > 0 && v > alloc.Scalar[name]-used.Scalar[name] {
			reasons = append(reasons, fmt.Sprintf("Insufficient %s", name))
		}
	}
	if len(reasons) > 0 {
		return framework.NewStatus(framework.Unschedulable, reasons...)
	}
	return nil
}

// Score implements framework.ScorePlugin.
func (f *NodeResourcesFit) Score(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	var sum, weights int64
	for _, r := range f.Resources {
		alloc, req, ok := allocatableAndRequested(pod, node, r.Name)
		if !ok {
			continue
		}
		var s int64
		if f.Strategy == MostAllocated {
			s = min(req, alloc) * framework.MaxNodeScore / alloc
		} else if req < alloc {
			s = (alloc - req) * framework.MaxNodeScore / alloc
		}
		sum += s * r.Weight
		weights += r.Weight
	}
	if weights == 0 {
		return 0, nil
	}
	return sum / weights, nil
}

// allocatableAndRequested returns a node's allocatable amount of a resource
// and what would be requested with pod on it, using the scoring defaults
// for cpu and memory. ok is false when the resource is not scored here.
func allocatableAndRequested(pod *framework.PodInfo, node *framework.NodeInfo, name v1.ResourceName) (alloc, req int64, ok bool) {
	alloc = node.Allocatable.Get(name)
	switch name {
	case v1.ResourceCPU:
		req = node.NonZeroRequested.MilliCPU + pod.NonZeroCPU
	case v1.ResourceMemory:
		req = node.NonZeroRequested.Memory + pod.NonZeroMemory
	default:
		p := pod.Requests.Get(name)
		if p == 0 && name != v1.ResourceEphemeralStorage {
			return 0, 0, false
		}
		req = node.Requested.Get(name) + p
	}
	return alloc, req, alloc > 0
}
