package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func spread(key string, skew int32, action v1.UnsatisfiableConstraintAction, opts ...func(*v1.TopologySpreadConstraint)) v1.TopologySpreadConstraint {
	c := v1.TopologySpreadConstraint{MaxSkew: skew, TopologyKey: key, WhenUnsatisfiable: action, LabelSelector: selector("app", "web")}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func webOn(name, node string) *v1.Pod {
	return mkPod(name, podOnNode(node), podLabels("app", "web"))
}

func TestPodTopologySpreadFilter(t *testing.T) {
	honor, ignore := v1.NodeInclusionPolicyHonor, v1.NodeInclusionPolicyIgnore
	three := int32(3)
	nodes := zonedNodes()
	nodes[2].Spec.Taints = []v1.Taint{{Key: "dedicated", Effect: v1.TaintEffectNoSchedule}} // b1
	twoInA := []*v1.Pod{webOn("w1", "a1"), webOn("w2", "a1")}
	balanced := []*v1.Pod{webOn("w1", "a1"), webOn("w2", "b1")}
	skew := "U:" + ErrReasonConstraintsNotMatch
	label := "UU:" + ErrReasonNodeLabelNotMatch
	tests := []struct {
		name     string
		pod      *v1.Pod
		existing []*v1.Pod
		want     map[string]string
	}{
		{"no constraints skips", mkPod("p", podLabels("app", "web")), twoInA, map[string]string{"a1": "", "a2": "", "b1": "", "nozone": ""}},
		{"zone skew", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule))), twoInA,
			map[string]string{"a1": skew, "a2": skew, "b1": "", "nozone": label}},
		{"larger maxSkew admits zone a", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 3, v1.DoNotSchedule))), twoInA,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": label}},
		{"hostname skew", mkPod("p", podLabels("app", "web"), podSpread(spread(v1.LabelHostname, 1, v1.DoNotSchedule))), twoInA,
			map[string]string{"a1": skew, "a2": "", "b1": "", "nozone": ""}},
		{"pod not matching its selector does not count itself", mkPod("p", podSpread(spread(zone, 1, v1.DoNotSchedule))), twoInA,
			map[string]string{"a1": skew, "a2": skew, "b1": "", "nozone": label}},
		{"ScheduleAnyway never filters", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 1, v1.ScheduleAnyway))), twoInA,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": ""}},
		{"balanced zones admit either", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule))), balanced,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": label}},
		{"minDomains above the domain count makes the minimum 0", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule,
			func(c *v1.TopologySpreadConstraint) { c.MinDomains = &three }))), balanced,
			map[string]string{"a1": skew, "a2": skew, "b1": skew, "nozone": label}},
		{"nodeAffinityPolicy Honor leaves out zones the pod cannot use", mkPod("p", podLabels("app", "web"),
			podAffinity(required(expr(zone, v1.NodeSelectorOpIn, "a"))), podSpread(spread(zone, 1, v1.DoNotSchedule))), twoInA,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": label}},
		{"nodeAffinityPolicy Ignore counts them", mkPod("p", podLabels("app", "web"),
			podAffinity(required(expr(zone, v1.NodeSelectorOpIn, "a"))), podSpread(spread(zone, 1, v1.DoNotSchedule,
				func(c *v1.TopologySpreadConstraint) { c.NodeAffinityPolicy = &ignore }))), twoInA,
			map[string]string{"a1": skew, "a2": skew, "b1": "", "nozone": label}},
		{"nodeTaintsPolicy Honor leaves out tainted nodes", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule,
			func(c *v1.TopologySpreadConstraint) { c.NodeTaintsPolicy = &honor }))), twoInA,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": label}},
		{"matchLabelKeys narrows the selector", mkPod("p", podLabels("app", "web", "rev", "2"), podSpread(spread(zone, 1, v1.DoNotSchedule,
			func(c *v1.TopologySpreadConstraint) { c.MatchLabelKeys = []string{"rev"} }))), twoInA,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": label}},
		{"other namespaces do not count", mkPod("p", podNS("other"), podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule))), twoInA,
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": label}},
		{"terminating pods do not count", mkPod("p", podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule))),
			[]*v1.Pod{webOn("w1", "b1"), mkPod("w2", podOnNode("a1"), podLabels("app", "web"), func(p *v1.Pod) { p.DeletionTimestamp = &metav1.Time{} })},
			map[string]string{"a1": "", "a2": "", "b1": skew, "nozone": label}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, PodTopologySpread{}, tc.pod, cluster(t, nodes, tc.existing...)), tc.want)
		})
	}
}

func TestPodTopologySpreadScore(t *testing.T) {
	nodes := zonedNodes()
	existing := []*v1.Pod{webOn("w1", "a1"), webOn("w2", "a1"), webOn("w3", "a2")}
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]int64
	}{
		{"DoNotSchedule only skips", mkPod("p", podSpread(spread(zone, 1, v1.DoNotSchedule))), nil},
		// raw: count*log(4+2): a1 4, a2 2, others 0.
		{"hostname", mkPod("p", podSpread(spread(v1.LabelHostname, 1, v1.ScheduleAnyway))),
			map[string]int64{"a1": 0, "a2": 50, "b1": 100, "nozone": 100}},
		// raw: zone a 3*log(4) → 4, b 0; the node without the key is ignored.
		{"zone", mkPod("p", podSpread(spread(zone, 1, v1.ScheduleAnyway))),
			map[string]int64{"a1": 0, "a2": 0, "b1": 100, "nozone": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := score(t, PodTopologySpread{}, tc.pod, cluster(t, nodes, existing...))
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
