package plugins

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// TaintTolerationName is the plugin's name.
const TaintTolerationName = "TaintToleration"

// TaintToleration rejects nodes with a NoSchedule or NoExecute taint the pod
// does not tolerate and prefers nodes with fewer untolerated
// PreferNoSchedule taints.
type TaintToleration struct{}

// Name implements framework.Plugin.
func (TaintToleration) Name() string { return TaintTolerationName }

// Filter implements framework.FilterPlugin.
func (TaintToleration) Filter(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	for i := range node.Node().Spec.Taints {
		t := &node.Node().Spec.Taints[i]
		if t.Effect != v1.TaintEffectNoSchedule && t.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !tolerates(pod.Pod.Spec.Tolerations, t) {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable,
				fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value))
		}
	}
	return nil
}

// Score implements framework.ScorePlugin: the number of PreferNoSchedule
// taints not tolerated (by tolerations with an empty or PreferNoSchedule
// effect); fewer is better.
func (TaintToleration) Score(_ context.Context, _ *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	var tols []v1.Toleration
	for _, t := range pod.Pod.Spec.Tolerations {
		if t.Effect == "" || t.Effect == v1.TaintEffectPreferNoSchedule {
			tols = append(tols, t)
		}
	}
	var n int64
	for i := range node.Node().Spec.Taints {
		t := &node.Node().Spec.Taints[i]
		if t.Effect == v1.TaintEffectPreferNoSchedule && !tolerates(tols, t) {
			n++
		}
	}
	return n, nil
}

// NormalizeScore implements framework.NormalizeScorePlugin.
func (TaintToleration) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	framework.DefaultNormalizeScore(true, scores)
	return nil
}

// tolerates reports whether any toleration tolerates taint: same key (or an
// empty key with Exists), same effect (or an empty effect), and equal value
// for the Equal operator.
func tolerates(tols []v1.Toleration, taint *v1.Taint) bool {
	for i := range tols {
		t := &tols[i]
		if t.Effect != "" && t.Effect != taint.Effect {
			continue
		}
		if t.Key != "" && t.Key != taint.Key {
			continue
		}
		switch t.Operator {
		case v1.TolerationOpExists:
			return true
		case "", v1.TolerationOpEqual:
			if t.Key != "" && t.Value == taint.Value {
				return true
			}
		}
	}
	return false
}
