package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestNodeResourcesFitFilter(t *testing.T) {
	nodes := []*v1.Node{
		mkNode("busy"), // holds 3 cpu, 4Gi
		mkNode("empty"),
		mkNode("gpu", nodeAlloc("nvidia.com/gpu", "2")),
		mkNode("tiny", nodeAlloc(v1.ResourcePods, "1")), // holds one pod
	}
	existing := []*v1.Pod{
		mkPod("b1", podOnNode("busy"), podRequests("cpu", "3", "memory", "4Gi")),
		mkPod("t1", podOnNode("tiny")),
	}
	fit, err := NewNodeResourcesFit("", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]string
	}{
		{"small pod fits everywhere but the full node", mkPod("p", podRequests("cpu", "500m", "memory", "1Gi")),
			map[string]string{"busy": "", "empty": "", "gpu": "", "tiny": "U:" + ErrReasonTooManyPods}},
		{"cpu", mkPod("p", podRequests("cpu", "2")),
			map[string]string{"busy": "U:Insufficient cpu", "empty": "", "gpu": "", "tiny": "U:" + ErrReasonTooManyPods}},
		{"cpu and memory are both reported", mkPod("p", podRequests("cpu", "2", "memory", "5Gi")),
			map[string]string{"busy": "U:Insufficient cpu, Insufficient memory", "empty": "", "gpu": "", "tiny": "U:" + ErrReasonTooManyPods}},
		{"pods and cpu together", mkPod("p", podRequests("cpu", "5")),
			map[string]string{"busy": "U:Insufficient cpu", "empty": "U:Insufficient cpu", "gpu": "U:Insufficient cpu", "tiny": "U:Too many pods, Insufficient cpu"}},
		{"ephemeral storage", mkPod("p", podRequests("ephemeral-storage", "200Gi")),
			map[string]string{"busy": "U:Insufficient ephemeral-storage", "empty": "U:Insufficient ephemeral-storage", "gpu": "U:Insufficient ephemeral-storage", "tiny": "U:Too many pods, Insufficient ephemeral-storage"}},
		{"extended resource", mkPod("p", podRequests("nvidia.com/gpu", "2")),
			map[string]string{"busy": "U:Insufficient nvidia.com/gpu", "empty": "U:Insufficient nvidia.com/gpu", "gpu": "", "tiny": "U:Too many pods, Insufficient nvidia.com/gpu"}},
		{"extended resource over capacity", mkPod("p", podRequests("nvidia.com/gpu", "3")),
			map[string]string{"busy": "U:Insufficient nvidia.com/gpu", "empty": "U:Insufficient nvidia.com/gpu", "gpu": "U:Insufficient nvidia.com/gpu", "tiny": "U:Too many pods, Insufficient nvidia.com/gpu"}},
		{"init container larger than containers counts", mkPod("p", podRequests("cpu", "500m"), func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "init", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}}}}
		}), map[string]string{"busy": "U:Insufficient cpu", "empty": "", "gpu": "", "tiny": "U:" + ErrReasonTooManyPods}},
		{"overhead counts", mkPod("p", podRequests("cpu", "500m"), func(p *v1.Pod) {
			p.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse("600m")}
		}), map[string]string{"busy": "U:Insufficient cpu", "empty": "", "gpu": "", "tiny": "U:" + ErrReasonTooManyPods}},
		{"limits stand in for missing requests", mkPod("p", func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}
		}), map[string]string{"busy": "U:Insufficient cpu", "empty": "", "gpu": "", "tiny": "U:" + ErrReasonTooManyPods}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, fit, tc.pod, cluster(t, nodes, existing...)), tc.want)
		})
	}
}

func TestNodeResourcesFitScore(t *testing.T) {
	nodes := []*v1.Node{mkNode("busy"), mkNode("empty")}
	existing := mkPod("b1", podOnNode("busy"), podRequests("cpu", "2", "memory", "2Gi"))
	pod := mkPod("p", podRequests("cpu", "1", "memory", "2Gi"))
	tests := []struct {
		strategy  string
		resources []ResourceWeight
		want      map[string]int64
	}{
		// empty: cpu 75, mem 75; busy: cpu 25, mem 50.
		{LeastAllocated, nil, map[string]int64{"busy": 37, "empty": 75}},
		// empty: cpu 25, mem 25; busy: cpu 75, mem 50.
		{MostAllocated, nil, map[string]int64{"busy": 62, "empty": 25}},
		// cpu weighs 3: busy (75*3+50)/4.
		{MostAllocated, []ResourceWeight{{Name: v1.ResourceCPU, Weight: 3}, {Name: v1.ResourceMemory, Weight: 1}}, map[string]int64{"busy": 68, "empty": 25}},
	}
	for _, tc := range tests {
		t.Run(tc.strategy, func(t *testing.T) {
			fit, err := NewNodeResourcesFit(tc.strategy, tc.resources)
			if err != nil {
				t.Fatal(err)
			}
			assertMap(t, score(t, fit, pod, cluster(t, nodes, existing)), tc.want)
		})
	}
	if _, err := NewNodeResourcesFit("Random", nil); err == nil {
		t.Error("unknown strategy accepted")
	}
}

func TestNodeResourcesFitScoreUsesDefaultsForEmptyPods(t *testing.T) {
	fit, _ := NewNodeResourcesFit(LeastAllocated, nil)
	nodes := []*v1.Node{mkNode("a"), mkNode("b")}
	// Three request-less pods on a count as 300m and 600Mi for scoring.
	var existing []*v1.Pod
	for _, n := range []string{"x", "y", "z"} {
		existing = append(existing, mkPod(n, podOnNode("a")))
	}
	got := score(t, fit, mkPod("p"), cluster(t, nodes, existing...))
	if got["a"] >= got["b"] {
		t.Errorf("node with request-less pods should score lower: %v", got)
	}
}

func TestBalancedAllocation(t *testing.T) {
	nodes := []*v1.Node{mkNode("busy"), mkNode("empty"), mkNode("cpuheavy")}
	existing := []*v1.Pod{
		mkPod("b1", podOnNode("busy"), podRequests("cpu", "2", "memory", "2Gi")),
		mkPod("c1", podOnNode("cpuheavy"), podRequests("cpu", "3", "memory", "1")),
	}
	pod := mkPod("p", podRequests("cpu", "1", "memory", "2Gi"))
	// busy: cpu .75 mem .5 → 87; empty: .25/.25 → 100; cpuheavy: cpu 1.0, mem .25 → 62.
	assertMap(t, score(t, &BalancedAllocation{}, pod, cluster(t, nodes, existing...)), map[string]int64{"busy": 87, "empty": 100, "cpuheavy": 62})
}
