package plugins

import (
	"context"
	"strconv"

	v1 "k8s.io/api/core/v1"

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
	if !podMatchesNodeAffinity(pod.Pod, node.Node()) {
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
		if matchTerm(&t.Preference, node.Node()) {
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

// podMatchesNodeAffinity checks nodeSelector and the required terms.
func podMatchesNodeAffinity(pod *v1.Pod, node *v1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if lv, ok := node.Labels[k]; !ok || lv != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for i := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		t := &a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[i]
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			continue // an empty term matches nothing
		}
		if matchTerm(t, node) {
			return true
		}
	}
	return false
}

// matchTerm ANDs a term's expressions and fields.
func matchTerm(t *v1.NodeSelectorTerm, node *v1.Node) bool {
	for i := range t.MatchExpressions {
		if !matchExpression(&t.MatchExpressions[i], node.Labels) {
			return false
		}
	}
	for i := range t.MatchFields {
		r := &t.MatchFields[i]
		if r.Key != "metadata.name" {
			return false
		}
		in := contains(r.Values, node.Name)
		switch r.Operator {
		case v1.NodeSelectorOpIn:
			if !in {
				return false
			}
		case v1.NodeSelectorOpNotIn:
			if in {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func matchExpression(r *v1.NodeSelectorRequirement, l map[string]string) bool {
	v, ok := l[r.Key]
	switch r.Operator {
	case v1.NodeSelectorOpIn:
		return ok && contains(r.Values, v)
	case v1.NodeSelectorOpNotIn:
		return !ok || !contains(r.Values, v)
	case v1.NodeSelectorOpExists:
		return ok
	case v1.NodeSelectorOpDoesNotExist:
		return !ok
	case v1.NodeSelectorOpGt, v1.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == v1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
