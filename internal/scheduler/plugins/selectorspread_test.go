package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

func ownedBy(uid string) func(*v1.Pod) {
	yes := true
	return func(p *v1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID("rs-" + uid), Controller: &yes}}
	}
}

func TestSelectorSpread(t *testing.T) {
	nodes := zonedNodes()
	existing := []*v1.Pod{
		mkPod("s1", podOnNode("a1"), ownedBy("1")),
		mkPod("s2", podOnNode("a1"), ownedBy("1")),
		mkPod("s3", podOnNode("b1"), ownedBy("1")),
		mkPod("o1", podOnNode("b1"), ownedBy("2")),
		mkPod("o2", podOnNode("nozone"), ownedBy("2")),
		// owned by the same ReplicaSet but not as its controller: no sibling
		mkPod("n1", podOnNode("a2"), func(p *v1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-1"}}
		}),
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]int64
	}{
		{"no controller skips", mkPod("p"), nil},
		{"explicit spread constraints skip", mkPod("p", ownedBy("1"), podSpread(spread(zone, 1, v1.ScheduleAnyway))), nil},
		// node share 1/3, zone share 2/3: a has 2 siblings, b 1.
		{"spreads siblings over nodes and zones", mkPod("p", ownedBy("1")),
			map[string]int64{"a1": 0, "a2": 33, "b1": 50, "nozone": 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := score(t, SelectorSpread{}, tc.pod, cluster(t, nodes, existing...))
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

func TestSelectorSpreadByService(t *testing.T) {
	nodes := cluster(t, []*v1.Node{mkNode("x"), mkNode("y")},
		mkPod("s1", podOnNode("x"), podLabels("svc", "api")),
		mkPod("s2", podOnNode("x"), podLabels("svc", "api")))
	snap := framework.NewSnapshot(nodes)
	snap.ServiceSelectors = func(p *v1.Pod) []labels.Selector {
		if p.Labels["svc"] == "api" {
			return []labels.Selector{labels.SelectorFromSet(labels.Set{"svc": "api"})}
		}
		return nil
	}
	pl := SelectorSpread{}
	pi := framework.NewPodInfo(mkPod("p", podLabels("svc", "api")))
	state := framework.NewCycleState()
	if st := pl.PreScore(t.Context(), state, pi, snap, nodes); !st.IsSuccess() {
		t.Fatalf("prescore: %v", st.Message())
	}
	scores := make([]framework.NodeScore, len(nodes))
	for i, n := range nodes {
		s, _ := pl.Score(t.Context(), state, pi, n)
		scores[i] = framework.NodeScore{Name: n.Name(), Score: s}
	}
	pl.NormalizeScore(t.Context(), state, pi, scores)
	if scores[0].Score != 0 || scores[1].Score != 100 {
		t.Errorf("scores %v, want x 0 and y 100", scores)
	}
}
