package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

func term(key string, sel *metav1.LabelSelector) v1.PodAffinityTerm {
	return v1.PodAffinityTerm{TopologyKey: key, LabelSelector: sel}
}

func affinity(req ...v1.PodAffinityTerm) func(*v1.Pod) {
	return func(p *v1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &v1.Affinity{}
		}
		p.Spec.Affinity.PodAffinity = &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: req}
	}
}

func antiAffinity(req ...v1.PodAffinityTerm) func(*v1.Pod) {
	return func(p *v1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &v1.Affinity{}
		}
		p.Spec.Affinity.PodAntiAffinity = &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: req}
	}
}

const zone = v1.LabelTopologyZone

func zonedNodes() []*v1.Node {
	return []*v1.Node{
		mkNode("a1", nodeLabels(zone, "a")),
		mkNode("a2", nodeLabels(zone, "a")),
		mkNode("b1", nodeLabels(zone, "b")),
		mkNode("nozone"),
	}
}

func TestInterPodAffinityFilter(t *testing.T) {
	nodes := zonedNodes()
	db := mkPod("db", podOnNode("a1"), podLabels("app", "db"))
	otherNSdb := mkPod("db2", podOnNode("b1"), podLabels("app", "db"), podNS("other"))
	guard := mkPod("guard", podOnNode("b1"), podLabels("app", "guard"), antiAffinity(term(zone, selector("app", "web"))))
	aff := "UU:" + ErrReasonAffinityRulesNotMatch
	anti := "U:" + ErrReasonAntiAffinityRulesNotMatch
	existing := "U:" + ErrReasonExistingAntiAffinityRulesNotMatch
	tests := []struct {
		name     string
		pod      *v1.Pod
		existing []*v1.Pod
		want     map[string]string
	}{
		{"no terms skips", mkPod("p"), []*v1.Pod{db}, map[string]string{"a1": "", "a2": "", "b1": "", "nozone": ""}},
		{"affinity to zone of db", mkPod("p", affinity(term(zone, selector("app", "db")))), []*v1.Pod{db},
			map[string]string{"a1": "", "a2": "", "b1": aff, "nozone": aff}},
		{"affinity by hostname", mkPod("p", affinity(term(v1.LabelHostname, selector("app", "db")))), []*v1.Pod{db},
			map[string]string{"a1": "", "a2": aff, "b1": aff, "nozone": aff}},
		{"affinity ignores other namespaces", mkPod("p", affinity(term(zone, selector("app", "db")))), []*v1.Pod{otherNSdb},
			map[string]string{"a1": aff, "a2": aff, "b1": aff, "nozone": aff}},
		{"affinity with namespaces list", mkPod("p", affinity(v1.PodAffinityTerm{TopologyKey: zone, LabelSelector: selector("app", "db"), Namespaces: []string{"other"}})),
			[]*v1.Pod{db, otherNSdb}, map[string]string{"a1": aff, "a2": aff, "b1": "", "nozone": aff}},
		{"affinity with empty namespaceSelector selects all namespaces", mkPod("p", affinity(v1.PodAffinityTerm{TopologyKey: zone, LabelSelector: selector("app", "db"), NamespaceSelector: &metav1.LabelSelector{}})),
			[]*v1.Pod{otherNSdb}, map[string]string{"a1": aff, "a2": aff, "b1": "", "nozone": aff}},
		{"first pod of a self-affine group may go anywhere with the label", mkPod("p", podLabels("app", "web"), affinity(term(zone, selector("app", "web")))), []*v1.Pod{db},
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": aff}},
		{"anti-affinity to db's zone", mkPod("p", antiAffinity(term(zone, selector("app", "db")))), []*v1.Pod{db},
			map[string]string{"a1": anti, "a2": anti, "b1": "", "nozone": ""}},
		{"existing pod's anti-affinity rejects web in its zone", mkPod("p", podLabels("app", "web")), []*v1.Pod{db, guard},
			map[string]string{"a1": "", "a2": "", "b1": existing, "nozone": ""}},
		{"existing anti-affinity does not apply to other labels", mkPod("p", podLabels("app", "api")), []*v1.Pod{db, guard},
			map[string]string{"a1": "", "a2": "", "b1": "", "nozone": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, &InterPodAffinity{}, tc.pod, cluster(t, nodes, tc.existing...)), tc.want)
		})
	}
}

func TestInterPodAffinityNamespaceSelector(t *testing.T) {
	nodes := cluster(t, zonedNodes(), mkPod("db", podOnNode("b1"), podLabels("app", "db"), podNS("prod")))
	pod := mkPod("p", affinity(v1.PodAffinityTerm{TopologyKey: zone, LabelSelector: selector("app", "db"), NamespaceSelector: selector("env", "prod")}))
	snap := framework.NewSnapshot(nodes)
	snap.NamespaceLabels = func(ns string) labels.Set {
		if ns == "prod" {
			return labels.Set{"env": "prod"}
		}
		return nil
	}
	pl := &InterPodAffinity{}
	state := framework.NewCycleState()
	pi := framework.NewPodInfo(pod)
	if st := pl.PreFilter(t.Context(), state, pi, snap); !st.IsSuccess() {
		t.Fatal(st.Message())
	}
	got := map[string]string{}
	for _, n := range nodes {
		got[n.Name()] = statusString(pl.Filter(t.Context(), state, pi, n))
	}
	aff := "UU:" + ErrReasonAffinityRulesNotMatch
	assertMap(t, got, map[string]string{"a1": aff, "a2": aff, "b1": "", "nozone": aff})
}

func TestInterPodAffinityScore(t *testing.T) {
	nodes := zonedNodes()
	cache := mkPod("cache", podOnNode("a1"), podLabels("app", "cache"))
	pref := func(anti bool, w int32, sel *metav1.LabelSelector) func(*v1.Pod) {
		return func(p *v1.Pod) {
			wt := []v1.WeightedPodAffinityTerm{{Weight: w, PodAffinityTerm: term(zone, sel)}}
			if anti {
				p.Spec.Affinity = &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: wt}}
			} else {
				p.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{PreferredDuringSchedulingIgnoredDuringExecution: wt}}
			}
		}
	}
	tests := []struct {
		name     string
		pod      *v1.Pod
		existing []*v1.Pod
		want     map[string]int64
	}{
		{"nothing to score skips", mkPod("p"), []*v1.Pod{cache}, nil},
		{"preferred affinity pulls to the zone", mkPod("p", pref(false, 10, selector("app", "cache"))), []*v1.Pod{cache},
			map[string]int64{"a1": 100, "a2": 100, "b1": 0, "nozone": 0}},
		{"preferred anti-affinity pushes away", mkPod("p", pref(true, 10, selector("app", "cache"))), []*v1.Pod{cache},
			map[string]int64{"a1": 0, "a2": 0, "b1": 100, "nozone": 100}},
		{"existing pod's preferred affinity pulls incoming pod", mkPod("p", podLabels("app", "web")),
			[]*v1.Pod{mkPod("x", podOnNode("b1"), pref(false, 5, selector("app", "web")))},
			map[string]int64{"a1": 0, "a2": 0, "b1": 100, "nozone": 0}},
		{"existing pod's required affinity counts with the hard weight", mkPod("p", podLabels("app", "web")),
			[]*v1.Pod{mkPod("x", podOnNode("a2"), affinity(term(zone, selector("app", "web"))))},
			map[string]int64{"a1": 100, "a2": 100, "b1": 0, "nozone": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := score(t, &InterPodAffinity{}, tc.pod, cluster(t, nodes, tc.existing...))
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
