package framework

import (
	"context"
	"maps"
	"sync/atomic"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func container(cpu, mem string) v1.Container {
	rl := v1.ResourceList{}
	if cpu != "" {
		rl[v1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		rl[v1.ResourceMemory] = resource.MustParse(mem)
	}
	return v1.Container{Resources: v1.ResourceRequirements{Requests: rl}}
}

func TestPodRequests(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	sidecar := func(c v1.Container) v1.Container { c.RestartPolicy = &always; return c }
	tests := []struct {
		name           string
		spec           v1.PodSpec
		wantCPU        int64
		wantMem        int64
		wantNonZeroCPU int64
	}{
		{"containers add up", v1.PodSpec{Containers: []v1.Container{container("100m", "1Ki"), container("200m", "2Ki")}}, 300, 3072, 300},
		{"largest init container wins when larger", v1.PodSpec{
			Containers:     []v1.Container{container("100m", "")},
			InitContainers: []v1.Container{container("500m", ""), container("300m", "")},
		}, 500, 0, 500},
		{"containers win when larger than init", v1.PodSpec{
			Containers:     []v1.Container{container("1", "")},
			InitContainers: []v1.Container{container("500m", "")},
		}, 1000, 0, 1000},
		{"sidecars run beside later init containers and the app", v1.PodSpec{
			Containers:     []v1.Container{container("100m", "")},
			InitContainers: []v1.Container{sidecar(container("200m", "")), container("500m", "")},
		}, 700, 0, 700},
		{"empty pod gets scoring defaults only", v1.PodSpec{Containers: []v1.Container{{}}}, 0, 0, DefaultMilliCPURequest},
		{"overhead adds", v1.PodSpec{Containers: []v1.Container{container("100m", "")}, Overhead: v1.ResourceList{v1.ResourceCPU: resource.MustParse("50m")}}, 150, 0, 150},
		{"pod-level requests replace container sums", v1.PodSpec{Containers: []v1.Container{container("100m", "")},
			Resources: &v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}}}, 2000, 0, 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pi := NewPodInfo(&v1.Pod{Spec: tc.spec})
			if pi.Requests.MilliCPU != tc.wantCPU || pi.Requests.Memory != tc.wantMem || pi.NonZeroCPU != tc.wantNonZeroCPU {
				t.Errorf("cpu %d mem %d nonzero cpu %d, want %d %d %d", pi.Requests.MilliCPU, pi.Requests.Memory, pi.NonZeroCPU, tc.wantCPU, tc.wantMem, tc.wantNonZeroCPU)
			}
		})
	}
}

func TestNodeInfoAddRemoveClone(t *testing.T) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")}}}
	p1 := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "a"}, Spec: v1.PodSpec{Containers: []v1.Container{container("1", "")}}}
	p2 := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "b", UID: "b"}, Spec: v1.PodSpec{Containers: []v1.Container{container("2", "")},
		Affinity: &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{TopologyKey: "k", LabelSelector: &metav1.LabelSelector{}}}}}}}
	ni := NewNodeInfo(node, NewPodInfo(p1), NewPodInfo(p2))
	if ni.Requested.MilliCPU != 3000 || len(ni.PodsWithRequiredAntiAffinity) != 1 || ni.Allocatable.MilliCPU != 4000 {
		t.Fatalf("after add: %+v", ni)
	}
	c := ni.Clone()
	if err := c.RemovePod(p2); err != nil {
		t.Fatal(err)
	}
	if c.Requested.MilliCPU != 1000 || len(c.Pods) != 1 || len(c.PodsWithRequiredAntiAffinity) != 0 {
		t.Errorf("clone after remove: %+v", c)
	}
	if ni.Requested.MilliCPU != 3000 || len(ni.Pods) != 2 || ni.Pods[1].Pod != p2 {
		t.Errorf("original changed by clone: %+v", ni)
	}
	if err := c.RemovePod(p2); err == nil {
		t.Error("removing an absent pod succeeded")
	}
}

func TestNodeInfoControllerPods(t *testing.T) {
	yes := true
	pod := func(name, owner string, controller, deleting bool) *v1.Pod {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name)}}
		if owner != "" {
			ref := metav1.OwnerReference{Kind: "ReplicaSet", Name: owner, UID: types.UID(owner)}
			if controller {
				ref.Controller = &yes
			}
			p.OwnerReferences = []metav1.OwnerReference{ref}
		}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	a1, a2, b1 := pod("a1", "rs-a", true, false), pod("a2", "rs-a", true, false), pod("b1", "rs-b", true, false)
	gone := pod("a3", "rs-a", true, true)
	notCtl := pod("x", "rs-a", false, false)
	bare := pod("y", "", false, false)
	ni := NewNodeInfo(node)
	for _, p := range []*v1.Pod{a1, a2, b1, gone, notCtl, bare} {
		ni.AddPod(NewPodInfo(p))
	}
	want := map[types.UID]int32{"rs-a": 2, "rs-b": 1}
	if !maps.Equal(ni.ControllerPods, want) {
		t.Fatalf("after add: %v, want %v", ni.ControllerPods, want)
	}
	c := ni.Clone()
	for _, p := range []*v1.Pod{a1, b1, gone} {
		if err := c.RemovePod(p); err != nil {
			t.Fatal(err)
		}
	}
	if wantC := map[types.UID]int32{"rs-a": 1}; !maps.Equal(c.ControllerPods, wantC) {
		t.Errorf("clone after remove: %v, want %v", c.ControllerPods, wantC)
	}
	if !maps.Equal(ni.ControllerPods, want) {
		t.Errorf("original changed by clone: %v", ni.ControllerPods)
	}
}

func TestFitErrorSortsReasons(t *testing.T) {
	u := NewStatus(Unschedulable, "Insufficient cpu")
	a := NewStatus(UnschedulableAndUnresolvable, "node(s) didn't match Pod's node affinity/selector")
	fe := &FitError{NumAllNodes: 12, Diagnosis: Diagnosis{NodeToStatus: map[string]*Status{
		"1": u, "2": u, "3": u, "4": a, "5": a, "6": NewStatus(Unschedulable, "Insufficient cpu", "Insufficient memory"),
		"7": a, "8": a, "9": a, "10": a, "11": a, "12": a,
	}}}
	want := "0/12 nodes are available: 1 Insufficient memory, 4 Insufficient cpu, 8 node(s) didn't match Pod's node affinity/selector."
	if got := fe.Error(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	fe.Diagnosis.PostFilterMsg = "preemption: not eligible due to preemptionPolicy=Never"
	if got := fe.Error(); got != want+" preemption: not eligible due to preemptionPolicy=Never." {
		t.Errorf("with post filter: %q", got)
	}
	fe.Diagnosis.PreFilterMsg = "node(s) had volume node affinity conflict"
	fe.Diagnosis.PostFilterMsg = ""
	if got := fe.Error(); got != "0/12 nodes are available: node(s) had volume node affinity conflict." {
		t.Errorf("with prefilter message: %q", got)
	}
}

func TestDefaultNormalizeScore(t *testing.T) {
	tests := []struct {
		in      []int64
		reverse bool
		want    []int64
	}{
		{[]int64{0, 5, 10}, false, []int64{0, 50, 100}},
		{[]int64{0, 5, 10}, true, []int64{100, 50, 0}},
		{[]int64{0, 0}, false, []int64{0, 0}},
		{[]int64{0, 0}, true, []int64{100, 100}},
	}
	for _, tc := range tests {
		s := make([]NodeScore, len(tc.in))
		for i, v := range tc.in {
			s[i].Score = v
		}
		DefaultNormalizeScore(tc.reverse, s)
		for i := range s {
			if s[i].Score != tc.want[i] {
				t.Errorf("%v reverse=%v: got %v want %v", tc.in, tc.reverse, s, tc.want)
				break
			}
		}
	}
}

func TestParallelizeVisitsEachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100, 1001} {
		seen := make([]atomic.Int32, n)
		parallelize(context.Background(), 4, n, func(i int) { seen[i].Add(1) })
		for i := range seen {
			if seen[i].Load() != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, seen[i].Load())
			}
		}
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	tests := []struct {
		pct  int32
		all  int
		want int
	}{
		{0, 50, 50}, {0, 99, 99}, {0, 100, 100}, {0, 200, 100}, {0, 1000, 420}, {0, 5000, 500},
		{0, 6000, 300}, {0, 10000, 500}, {10, 500, 100}, {50, 1000, 500}, {100, 5000, 5000},
	}
	for _, tc := range tests {
		f := New(Profile{PercentageOfNodesToScore: tc.pct})
		if got := f.numFeasibleNodesToFind(tc.all); got != tc.want {
			t.Errorf("pct %d of %d: got %d, want %d", tc.pct, tc.all, got, tc.want)
		}
	}
}

func TestSelectHostPicksMaxAndSpreadsTies(t *testing.T) {
	f := New(Profile{Seed: 7})
	scores := []NodeScore{{"a", 10}, {"b", 30}, {"c", 30}, {"d", 5}}
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		seen[f.selectHost(scores)]++
	}
	if seen["a"]+seen["d"] != 0 || seen["b"] == 0 || seen["c"] == 0 {
		t.Errorf("picks %v: want only b and c, both", seen)
	}
}

func TestSnapshotSetRemove(t *testing.T) {
	mk := func(name string, anti bool) *NodeInfo {
		ni := NewNodeInfo(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}})
		if anti {
			ni.AddPod(NewPodInfo(&v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p" + name, UID: types.UID("p" + name)}, Spec: v1.PodSpec{
				Affinity: &v1.Affinity{PodAntiAffinity: &v1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{{TopologyKey: "k"}}}}}}))
		}
		return ni
	}
	s := NewSnapshot([]*NodeInfo{mk("a", false), mk("b", true), mk("c", false), NewNodeInfo(nil)})
	if len(s.Nodes()) != 3 || len(s.NodesWithRequiredAntiAffinityPods()) != 1 {
		t.Fatalf("nodes %d anti %d", len(s.Nodes()), len(s.NodesWithRequiredAntiAffinityPods()))
	}
	s.Remove("a")
	s.Set(mk("c", true))
	s.Set(mk("d", false))
	s.Refresh()
	var names []string
	for _, n := range s.Nodes() {
		names = append(names, n.Name())
		if s.Get(n.Name()) != n {
			t.Errorf("Get(%s) does not return the listed node", n.Name())
		}
	}
	if len(names) != 3 || s.Get("a") != nil || len(s.NodesWithRequiredAntiAffinityPods()) != 2 || len(s.NodesWithAffinityPods()) != 2 {
		t.Errorf("after updates: nodes %v, anti %d", names, len(s.NodesWithRequiredAntiAffinityPods()))
	}
}
