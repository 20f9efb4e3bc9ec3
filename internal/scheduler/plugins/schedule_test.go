package plugins

import (
	"context"
	"errors"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

func newFramework(t testing.TB, cfg ProfileConfig) *framework.Framework {
	t.Helper()
	p, err := NewProfile(cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	p.Seed = 1
	return framework.New(p)
}

func TestScheduleFitErrorMessage(t *testing.T) {
	var nodes []*v1.Node
	var existing []*v1.Pod
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("n%d", i)
		if i < 3 {
			nodes = append(nodes, mkNode(name, nodeLabels("disk", "ssd")))
			existing = append(existing, mkPod("full"+name, podOnNode(name), podRequests("cpu", "3500m")))
		} else {
			nodes = append(nodes, mkNode(name))
		}
	}
	pod := mkPod("p", podRequests("cpu", "1"), func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} })
	f := newFramework(t, ProfileConfig{})
	snap := framework.NewSnapshot(cluster(t, nodes, existing...))
	_, err := f.Schedule(context.Background(), snap, pod)
	var fe *framework.FitError
	if !errors.As(err, &fe) {
		t.Fatalf("want FitError, got %v", err)
	}
	want := "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 Insufficient cpu."
	if fe.Error() != want {
		t.Errorf("message\n got %q\nwant %q", fe.Error(), want)
	}
	pre, msg, err := f.Preempt(context.Background(), snap, pod, fe.Diagnosis)
	if err != nil || pre != nil {
		t.Fatalf("preempt: %v %v", pre, err)
	}
	fe.Diagnosis.PostFilterMsg = msg
	want = "0/5 nodes are available: 2 node(s) didn't match Pod's node affinity/selector, 3 Insufficient cpu. " +
		"preemption: 0/5 nodes are available: 2 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod."
	if fe.Error() != want {
		t.Errorf("message\n got %q\nwant %q", fe.Error(), want)
	}
}

func TestScheduleNoNodes(t *testing.T) {
	_, err := newFramework(t, ProfileConfig{}).Schedule(context.Background(), framework.NewSnapshot(nil), mkPod("p"))
	if !errors.Is(err, framework.ErrNoNodesAvailable) {
		t.Fatalf("got %v", err)
	}
}

func TestScheduleChoosesBestNode(t *testing.T) {
	nodes := []*v1.Node{mkNode("empty"), mkNode("half"), mkNode("full")}
	existing := []*v1.Pod{
		mkPod("h", podOnNode("half"), podRequests("cpu", "2", "memory", "4Gi")),
		mkPod("f", podOnNode("full"), podRequests("cpu", "3", "memory", "6Gi")),
	}
	pod := mkPod("p", podRequests("cpu", "500m", "memory", "1Gi"))
	tests := []struct {
		name string
		cfg  ProfileConfig
		pod  *v1.Pod
		want string
	}{
		{"least allocated spreads", ProfileConfig{}, pod, "empty"},
		{"most allocated packs", ProfileConfig{ScoringStrategy: MostAllocated}, pod, "full"},
		{"preferred node affinity outweighs resources", ProfileConfig{}, mkPod("p", podRequests("cpu", "500m"),
			podAffinity(&v1.Affinity{NodeAffinity: &v1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []v1.PreferredSchedulingTerm{
				{Weight: 100, Preference: v1.NodeSelectorTerm{MatchFields: []v1.NodeSelectorRequirement{{Key: "metadata.name", Operator: v1.NodeSelectorOpIn, Values: []string{"half"}}}}},
			}}})), "half"},
		{"only one node fits", ProfileConfig{}, mkPod("p", podRequests("cpu", "3")), "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := newFramework(t, tc.cfg).Schedule(context.Background(), framework.NewSnapshot(cluster(t, nodes, existing...)), tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if res.Node != tc.want {
				t.Errorf("chose %s, want %s", res.Node, tc.want)
			}
		})
	}
}

func TestScheduleSpreadsReplicas(t *testing.T) {
	var nodes []*v1.Node
	for i := 0; i < 6; i++ {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%d", i), nodeLabels(zone, fmt.Sprintf("z%d", i%3))))
	}
	infos := cluster(t, nodes)
	f := newFramework(t, ProfileConfig{})
	perZone := map[string]int{}
	for i := 0; i < 6; i++ {
		pod := mkPod(fmt.Sprintf("r%d", i), podLabels("app", "web"),
			podSpread(spread(zone, 1, v1.DoNotSchedule), spread(v1.LabelHostname, 1, v1.DoNotSchedule)))
		res, err := f.Schedule(context.Background(), framework.NewSnapshot(infos), pod)
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		for _, ni := range infos {
			if ni.Name() == res.Node {
				pod.Spec.NodeName = res.Node
				ni.AddPod(framework.NewPodInfo(pod))
				perZone[ni.Node().Labels[zone]]++
				if len(ni.Pods) != 1 {
					t.Errorf("node %s got a second replica", res.Node)
				}
			}
		}
	}
	for z, n := range perZone {
		if n != 2 {
			t.Errorf("zone %s has %d replicas, want 2 (%v)", z, n, perZone)
		}
	}
}

func TestNumFeasibleNodesSampling(t *testing.T) {
	var nodes []*v1.Node
	for i := 0; i < 1000; i++ {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%04d", i)))
	}
	f := newFramework(t, ProfileConfig{})
	res, err := f.Schedule(context.Background(), framework.NewSnapshot(cluster(t, nodes)), mkPod("p"))
	if err != nil {
		t.Fatal(err)
	}
	// Adaptive: 50 - 1000/125 = 42% of 1000.
	if res.Feasible != 420 {
		t.Errorf("feasible %d, want 420", res.Feasible)
	}
	f = newFramework(t, ProfileConfig{PercentageOfNodesToScore: 100})
	if res, _ = f.Schedule(context.Background(), framework.NewSnapshot(cluster(t, nodes)), mkPod("p")); res.Feasible != 1000 {
		t.Errorf("feasible %d with 100%%, want 1000", res.Feasible)
	}
}

func pdb(name string, allowed int32, sel ...string) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: selector(sel...)},
		Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed},
	}
}

func TestPreemptionVictims(t *testing.T) {
	never := v1.PreemptNever
	low := func(name, node, cpu string, prio int32, opts ...func(*v1.Pod)) *v1.Pod {
		return mkPod(name, append([]func(*v1.Pod){podOnNode(node), podRequests("cpu", cpu), podPriority(prio)}, opts...)...)
	}
	tests := []struct {
		name        string
		nodes       []*v1.Node
		existing    []*v1.Pod
		pdbs        []*policyv1.PodDisruptionBudget
		nominated   map[string][]*v1.Pod // pending pods nominated to a node by earlier preemptions
		pod         *v1.Pod
		wantNode    string
		wantVictims []string
		wantMsg     string
	}{
		{
			name:  "lowest highest-victim priority wins",
			nodes: []*v1.Node{mkNode("n1"), mkNode("n2")},
			existing: []*v1.Pod{
				low("a", "n1", "1500m", 1), low("b", "n1", "1500m", 1),
				low("c", "n2", "3", 5),
			},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10)),
			wantNode: "n1", wantVictims: []string{"b"},
		},
		{
			name:  "only as many victims as needed, more important ones kept",
			nodes: []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{
				low("a", "n1", "1", 1), low("b", "n1", "1", 3), low("c", "n1", "1", 2), low("d", "n1", "1", 4),
			},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10)),
			wantNode: "n1", wantVictims: []string{"c", "a"},
		},
		{
			name:  "nodes without PDB violations are preferred",
			nodes: []*v1.Node{mkNode("n1"), mkNode("n2")},
			existing: []*v1.Pod{
				low("a", "n1", "3", 1, podLabels("app", "db")),
				low("b", "n2", "3", 5),
			},
			pdbs:     []*policyv1.PodDisruptionBudget{pdb("db", 0, "app", "db")},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10)),
			wantNode: "n2", wantVictims: []string{"b"},
		},
		{
			name:  "a budget with disruptions allowed is no violation",
			nodes: []*v1.Node{mkNode("n1"), mkNode("n2")},
			existing: []*v1.Pod{
				low("a", "n1", "3", 1, podLabels("app", "db")),
				low("b", "n2", "3", 5),
			},
			pdbs:     []*policyv1.PodDisruptionBudget{pdb("db", 1, "app", "db")},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10)),
			wantNode: "n1", wantVictims: []string{"a"},
		},
		{
			name:  "fewest victims among equal priorities",
			nodes: []*v1.Node{mkNode("n1"), mkNode("n2")},
			existing: []*v1.Pod{
				low("a", "n1", "1500m", 1), low("b", "n1", "1500m", 1), low("x", "n1", "1", 20),
				low("c", "n2", "3", 1),
			},
			pod:      mkPod("p", podRequests("cpu", "3"), podPriority(10)),
			wantNode: "n2", wantVictims: []string{"c"},
		},
		{
			name:     "higher-priority pods are never victims",
			nodes:    []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{low("a", "n1", "3", 100)},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10)),
			wantMsg:  "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod",
		},
		{
			name:     "removing every lower pod is not enough",
			nodes:    []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{low("a", "n1", "1", 1), low("b", "n1", "3", 100)},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10)),
			wantMsg:  "preemption: 0/1 nodes are available: 1 Insufficient cpu",
		},
		{
			name:     "preemptionPolicy Never",
			nodes:    []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{low("a", "n1", "3", 1)},
			pod:      mkPod("p", podRequests("cpu", "2"), podPriority(10), func(p *v1.Pod) { p.Spec.PreemptionPolicy = &never }),
			wantMsg:  "preemption: not eligible due to preemptionPolicy=Never",
		},
		{
			name:  "victim found through anti-affinity",
			nodes: []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{
				low("a", "n1", "100m", 1, podLabels("app", "batch")),
				low("b", "n1", "100m", 1, podLabels("app", "other")),
			},
			pod:      mkPod("p", podPriority(10), antiAffinity(term(v1.LabelHostname, selector("app", "batch")))),
			wantNode: "n1", wantVictims: []string{"a"},
		},
		{
			name:  "victim found through topology spread",
			nodes: []*v1.Node{mkNode("n1", nodeLabels(zone, "a")), mkNode("n2", nodeLabels(zone, "b"), nodeAlloc(v1.ResourcePods, "1"))},
			existing: []*v1.Pod{
				low("w1", "n1", "100m", 1, podLabels("app", "web")),
				low("filler", "n2", "100m", 5),
			},
			pod:      mkPod("p", podPriority(10), podLabels("app", "web"), podSpread(spread(zone, 1, v1.DoNotSchedule))),
			wantNode: "n1", wantVictims: []string{"w1"},
		},
		{
			// Two preemptors of one priority: the second must not count on
			// the victim the first was nominated for.
			name:  "an earlier preemptor's nomination keeps its victim",
			nodes: []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{
				low("a", "n1", "1", 1), low("b", "n1", "1", 2), low("c", "n1", "1", 3), low("d", "n1", "1", 4),
			},
			nominated: map[string][]*v1.Pod{"n1": {mkPod("first", podRequests("cpu", "1"), podPriority(10))}},
			pod:       mkPod("p", podRequests("cpu", "1"), podPriority(10)),
			wantNode:  "n1", wantVictims: []string{"b", "a"},
		},
		{
			name:  "a nomination of lower priority keeps no room",
			nodes: []*v1.Node{mkNode("n1")},
			existing: []*v1.Pod{
				low("a", "n1", "1", 1), low("b", "n1", "1", 2), low("c", "n1", "1", 3), low("d", "n1", "1", 4),
			},
			nominated: map[string][]*v1.Pod{"n1": {mkPod("first", podRequests("cpu", "1"), podPriority(5))}},
			pod:       mkPod("p", podRequests("cpu", "1"), podPriority(10)),
			wantNode:  "n1", wantVictims: []string{"a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFramework(t, ProfileConfig{})
			snap := framework.NewSnapshot(cluster(t, tc.nodes, tc.existing...))
			snap.PDBs = tc.pdbs
			snap.Nominated = func(node string) []*framework.PodInfo {
				var out []*framework.PodInfo
				for _, p := range tc.nominated[node] {
					out = append(out, framework.NewPodInfo(p))
				}
				return out
			}
			_, err := f.Schedule(context.Background(), snap, tc.pod)
			var fe *framework.FitError
			if !errors.As(err, &fe) {
				t.Fatalf("pod should not fit before preemption: %v", err)
			}
			pre, msg, err := f.Preempt(context.Background(), snap, tc.pod, fe.Diagnosis)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantMsg != "" {
				if pre != nil || msg != tc.wantMsg {
					t.Fatalf("got %+v %q, want message %q", pre, msg, tc.wantMsg)
				}
				return
			}
			if pre == nil {
				t.Fatalf("no preemption: %s", msg)
			}
			var names []string
			for _, v := range pre.Victims {
				names = append(names, v.Name)
			}
			if pre.Node != tc.wantNode || fmt.Sprint(names) != fmt.Sprint(tc.wantVictims) {
				t.Errorf("got node %s victims %v, want %s %v", pre.Node, names, tc.wantNode, tc.wantVictims)
			}
		})
	}
}

func TestNominatedPodsReserveRoom(t *testing.T) {
	nodes := []*v1.Node{mkNode("n1"), mkNode("n2", nodeAlloc(v1.ResourceCPU, "2"))}
	infos := cluster(t, nodes)
	nominated := framework.NewPodInfo(mkPod("vip", podRequests("cpu", "3"), podPriority(100)))
	snap := framework.NewSnapshot(infos)
	snap.Nominated = func(node string) []*framework.PodInfo {
		if node == "n1" {
			return []*framework.PodInfo{nominated}
		}
		return nil
	}
	f := newFramework(t, ProfileConfig{})
	tests := []struct {
		name string
		pod  *v1.Pod
		want string
	}{
		{"lower priority pod avoids the reserved room", mkPod("low", podRequests("cpu", "2"), podPriority(1)), "n2"},
		{"higher priority pod ignores the reservation", mkPod("top", podRequests("cpu", "3"), podPriority(1000)), "n1"},
		{"the nominated pod itself fits", nominated.Pod, "n1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := f.Schedule(context.Background(), snap, tc.pod)
			if err != nil {
				t.Fatal(err)
			}
			if res.Node != tc.want {
				t.Errorf("chose %s, want %s", res.Node, tc.want)
			}
		})
	}
}
