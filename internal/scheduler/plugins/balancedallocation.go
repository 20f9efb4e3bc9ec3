package plugins

import (
	"context"
	"math"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// BalancedAllocationName is the plugin's name.
const BalancedAllocationName = "NodeResourcesBalancedAllocation"

// BalancedAllocation prefers nodes whose resource usage fractions would be
// close to each other with the pod placed: 100 * (1 - standard deviation).
type BalancedAllocation struct {
	// Resources scored; default cpu and memory (weights are ignored).
	Resources []ResourceWeight
}

// Name implements framework.Plugin.
func (*BalancedAllocation) Name() string { return BalancedAllocationName }

// Score implements framework.ScorePlugin.
func (b *BalancedAllocation) Score(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	res := b.Resources
	if len(res) == 0 {
		res = defaultResources
	}
	fractions := make([]float64, 0, len(res))
	for _, r := range res {
		alloc, req, ok := allocatableAndRequested(pod, node, r.Name)
		if !ok {
			continue
		}
		fractions = append(fractions, math.Min(1, float64(req)/float64(alloc)))
	}
	var std float64
	switch len(fractions) {
	case 0, 1:
	case 2:
		std = math.Abs(fractions[0]-fractions[1]) / 2
	default:
		var mean float64
		for _, f := range fractions {
			mean += f
		}
		mean /= float64(len(fractions))
		var v float64
		for _, f := range fractions {
			v += (f - mean) * (f - mean)
		}
		std = math.Sqrt(v / float64(len(fractions)))
	}
	return int64((1 - std) * float64(framework.MaxNodeScore)), nil
}
