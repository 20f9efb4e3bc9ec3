package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func required(terms ...v1.NodeSelectorTerm) *v1.Affinity {
	return &v1.Affinity{NodeAffinity: &v1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: terms}}}
}

func expr(key string, op v1.NodeSelectorOperator, vals ...string) v1.NodeSelectorTerm {
	return v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
}

func TestNodeAffinityFilter(t *testing.T) {
	nodes := []*v1.Node{
		mkNode("ssd", nodeLabels("disk", "ssd", "cores", "16")),
		mkNode("hdd", nodeLabels("disk", "hdd", "cores", "4")),
		mkNode("bare"),
	}
	no := "UU:" + ErrReasonNodeAffinity
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]string
	}{
		{"no constraints", mkPod("p"), map[string]string{"ssd": "", "hdd": "", "bare": ""}},
		{"nodeSelector", mkPod("p", func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }),
			map[string]string{"ssd": "", "hdd": no, "bare": no}},
		{"In", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpIn, "ssd", "nvme")))),
			map[string]string{"ssd": "", "hdd": no, "bare": no}},
		{"NotIn matches nodes without the label", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpNotIn, "ssd")))),
			map[string]string{"ssd": no, "hdd": "", "bare": ""}},
		{"Exists", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpExists)))),
			map[string]string{"ssd": "", "hdd": "", "bare": no}},
		{"DoesNotExist", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpDoesNotExist)))),
			map[string]string{"ssd": no, "hdd": no, "bare": ""}},
		{"Gt", mkPod("p", podAffinity(required(expr("cores", v1.NodeSelectorOpGt, "8")))),
			map[string]string{"ssd": "", "hdd": no, "bare": no}},
		{"Lt", mkPod("p", podAffinity(required(expr("cores", v1.NodeSelectorOpLt, "8")))),
			map[string]string{"ssd": no, "hdd": "", "bare": no}},
		{"Gt with non-integer value matches nothing", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpGt, "1")))),
			map[string]string{"ssd": no, "hdd": no, "bare": no}},
		{"terms are ORed", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpIn, "hdd"), expr("disk", v1.NodeSelectorOpDoesNotExist)))),
			map[string]string{"ssd": no, "hdd": "", "bare": ""}},
		{"expressions are ANDed", mkPod("p", podAffinity(required(v1.NodeSelectorTerm{MatchExpressions: []v1.NodeSelectorRequirement{
			{Key: "disk", Operator: v1.NodeSelectorOpExists}, {Key: "cores", Operator: v1.NodeSelectorOpLt, Values: []string{"8"}},
		}}))), map[string]string{"ssd": no, "hdd": "", "bare": no}},
		{"empty term matches nothing", mkPod("p", podAffinity(required(v1.NodeSelectorTerm{}))),
			map[string]string{"ssd": no, "hdd": no, "bare": no}},
		{"matchFields metadata.name", mkPod("p", podAffinity(required(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{
			{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{"bare"}},
		}}))), map[string]string{"ssd": no, "hdd": no, "bare": ""}},
		{"matchFields NotIn", mkPod("p", podAffinity(required(v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{
			{Key: "metadata.name", Operator: v1.NodeSelectorOpNotIn, Values: []string{"bare"}},
		}}))), map[string]string{"ssd": "", "hdd": "", "bare": no}},
		{"nodeSelector and affinity both apply", mkPod("p", podAffinity(required(expr("disk", v1.NodeSelectorOpExists))),
			func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"cores": "4"} }),
			map[string]string{"ssd": no, "hdd": "", "bare": no}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, NodeAffinity{}, tc.pod, cluster(t, nodes)), tc.want)
		})
	}
}

func TestNodeAffinityScore(t *testing.T) {
	nodes := []*v1.Node{
		mkNode("a", nodeLabels("zone", "z1", "disk", "ssd")),
		mkNode("b", nodeLabels("zone", "z1")),
		mkNode("c", nodeLabels("zone", "z2")),
	}
	pref := func(terms ...v1.PreferredSchedulingTerm) func(*v1.Pod) {
		return podAffinity(&v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: terms}})
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]int64
	}{
		{"no preferences skips", mkPod("p"), nil},
		{"one term", mkPod("p", pref(v1.PreferredSchedulingTerm{Weight: 10, Preference: expr("zone", v1.NodeSelectorOpIn, "z1")})),
			map[string]int64{"a": 100, "b": 100, "c": 0}},
		{"weights add up and normalize", mkPod("p", pref(
			v1.PreferredSchedulingTerm{Weight: 20, Preference: expr("zone", v1.NodeSelectorOpIn, "z1")},
			v1.PreferredSchedulingTerm{Weight: 60, Preference: expr("disk", v1.NodeSelectorOpExists)},
		)), map[string]int64{"a": 100, "b": 25, "c": 0}},
		{"no node matches", mkPod("p", pref(v1.PreferredSchedulingTerm{Weight: 5, Preference: expr("zone", v1.NodeSelectorOpIn, "z9")})),
			map[string]int64{"a": 0, "b": 0, "c": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := score(t, NodeAffinity{}, tc.pod, cluster(t, nodes))
			if tc.want == nil {
				if got != nil {
					t.Fatalf("expected skip, got %v", got)
				}
				return
			}
			assertMap(t, got, tc.want)
		})
	}
}
