package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestTaintTolerationFilter(t *testing.T) {
	gpu := v1.Taint{Key: "gpu", Value: "true", Effect: v1.TaintEffectNoSchedule}
	evict := v1.Taint{Key: "maintenance", Effect: v1.TaintEffectNoExecute}
	soft := v1.Taint{Key: "spot", Value: "yes", Effect: v1.TaintEffectPreferNoSchedule}
	nodes := []*v1.Node{
		mkNode("gpu", nodeTaints(gpu)),
		mkNode("evict", nodeTaints(evict)),
		mkNode("soft", nodeTaints(soft)),
		mkNode("clean"),
	}
	gpuMsg := "UU:node(s) had untolerated taint {gpu: true}"
	evictMsg := "UU:node(s) had untolerated taint {maintenance: }"
	tests := []struct {
		name string
		tols []v1.Toleration
		want map[string]string
	}{
		{"no tolerations", nil, map[string]string{"gpu": gpuMsg, "evict": evictMsg, "soft": "", "clean": ""}},
		{"Equal with value", []v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpEqual, Value: "true", Effect: v1.TaintEffectNoSchedule}},
			map[string]string{"gpu": "", "evict": evictMsg, "soft": "", "clean": ""}},
		{"default operator is Equal", []v1.Toleration{{Key: "gpu", Value: "true"}},
			map[string]string{"gpu": "", "evict": evictMsg, "soft": "", "clean": ""}},
		{"Equal with wrong value", []v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpEqual, Value: "false"}},
			map[string]string{"gpu": gpuMsg, "evict": evictMsg, "soft": "", "clean": ""}},
		{"Exists any effect", []v1.Toleration{{Key: "maintenance", Operator: v1.TolerationOpExists}},
			map[string]string{"gpu": gpuMsg, "evict": "", "soft": "", "clean": ""}},
		{"wrong effect", []v1.Toleration{{Key: "maintenance", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}},
			map[string]string{"gpu": gpuMsg, "evict": evictMsg, "soft": "", "clean": ""}},
		{"empty key Exists tolerates all", []v1.Toleration{{Operator: v1.TolerationOpExists}},
			map[string]string{"gpu": "", "evict": "", "soft": "", "clean": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, TaintToleration{}, mkPod("p", podTolerations(tc.tols...)), cluster(t, nodes)), tc.want)
		})
	}
}

func TestTaintTolerationScore(t *testing.T) {
	soft := func(k string) v1.Taint { return v1.Taint{Key: k, Effect: v1.TaintEffectPreferNoSchedule} }
	nodes := []*v1.Node{
		mkNode("two", nodeTaints(soft("a"), soft("b"))),
		mkNode("one", nodeTaints(soft("a"))),
		mkNode("none"),
		mkNode("hard", nodeTaints(v1.Taint{Key: "a", Effect: v1.TaintEffectNoSchedule})),
	}
	tests := []struct {
		name string
		tols []v1.Toleration
		want map[string]int64
	}{
		{"fewer soft taints score higher", nil, map[string]int64{"two": 0, "one": 50, "none": 100, "hard": 100}},
		{"tolerated soft taint does not count", []v1.Toleration{{Key: "a", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectPreferNoSchedule}},
			map[string]int64{"two": 0, "one": 100, "none": 100, "hard": 100}},
		{"NoSchedule toleration does not count for scoring", []v1.Toleration{{Key: "a", Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule}},
			map[string]int64{"two": 0, "one": 50, "none": 100, "hard": 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, score(t, TaintToleration{}, mkPod("p", podTolerations(tc.tols...)), cluster(t, nodes)), tc.want)
		})
	}
}
