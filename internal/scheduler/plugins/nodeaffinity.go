package plugins

import (
	"context"

	"github.com/skiff-sh/skiff/internal/nodeaffinity"
	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// NodeAffinityName is the plugin's name.
const NodeAffinityName = "NodeAffinity"

// ErrReasonNodeAffinity is the reason for a node that fails nodeSelector or
// required node affinity.
const ErrReasonNodeAffinity = "node(s) didn't match Pod's node affinity/selector"

// NodeAffinity filters nodes by nodeSelector and required node affinity and
// scores them by the weights of the preferred terms they match.
type NodeAffinity struct{}

// Name implements framework.Plugin.
func (NodeAffinity) Name() string { return NodeAffinityName }

// Filter implements framework.FilterPlugin.
func (NodeAffinity) Filter(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	if !nodeaffinity.Matches(&pod.Pod.Spec, node.Node()) {
		return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeAffinity)
	}
	return nil
}

// PreScore implements framework.PreScorePlugin.
func (NodeAffinity) PreScore(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, _ *framework.Snapshot, _ []*framework.NodeInfo) *framework.Status {
	a := pod.Pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	return nil
}

// Score implements framework.ScorePlugin: the sum of the weights of the
// preferred terms the node matches.
func (NodeAffinity) Score(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	var score int64
	for _, t := range pod.Pod.Spec.Affinity.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		if t.Weight == 0 || (len(t.Preference.MatchExpressions) == 0 && len(t.Preference.MatchFields) == 0) {
			continue
		}
		if nodeaffinity.MatchTerm(&t.Preference, node.Node()) {
			score += int64(t.Weight)
		}
	}
	return score, nil
}

// NormalizeScore implements framework.NormalizeScorePlugin.
func (NodeAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	framework.DefaultNormalizeScore(false, scores)
	return nil
}
