package plugins

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// mkNode builds a Ready node with 4 cpu, 8Gi memory, 100Gi ephemeral
// storage and 110 pods, labelled with its hostname.
func mkNode(name string, opts ...func(*v1.Node)) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("node-" + name), Labels: map[string]string{v1.LabelHostname: name}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{
				v1.ResourceCPU:              resource.MustParse("4"),
				v1.ResourceMemory:           resource.MustParse("8Gi"),
				v1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
				v1.ResourcePods:             resource.MustParse("110"),
			},
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func nodeLabels(kv ...string) func(*v1.Node) {
	return func(n *v1.Node) {
		for i := 0; i < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func nodeTaints(ts ...v1.Taint) func(*v1.Node) {
	return func(n *v1.Node) { n.Spec.Taints = ts }
}

func nodeAlloc(name v1.ResourceName, q string) func(*v1.Node) {
	return func(n *v1.Node) { n.Status.Allocatable[name] = resource.MustParse(q) }
}

// mkPod builds a pod in namespace "default" with one container.
func mkPod(name string, opts ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("pod-" + name), Labels: map[string]string{}},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "app:1"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func podLabels(kv ...string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		for i := 0; i < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func podNS(ns string) func(*v1.Pod) { return func(p *v1.Pod) { p.Namespace = ns } }

func podOnNode(node string) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.NodeName = node } }

func podRequests(kv ...string) func(*v1.Pod) {
	return func(p *v1.Pod) {
		rl := v1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			rl[v1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		p.Spec.Containers[0].Resources.Requests = rl
	}
}

func podPriority(v int32) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.Priority = &v } }

func podAffinity(a *v1.Affinity) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.Affinity = a } }

func podTolerations(ts ...v1.Toleration) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Spec.Tolerations = ts }
}

func podSpread(cs ...v1.TopologySpreadConstraint) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Spec.TopologySpreadConstraints = cs }
}

func selector(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

// cluster builds NodeInfos from nodes and places each pod on the node its
// spec.nodeName names.
func cluster(t testing.TB, nodes []*v1.Node, pods ...*v1.Pod) []*framework.NodeInfo {
	t.Helper()
	byName := map[string]*framework.NodeInfo{}
	var out []*framework.NodeInfo
	for _, n := range nodes {
		ni := framework.NewNodeInfo(n)
		byName[n.Name] = ni
		out = append(out, ni)
	}
	for _, p := range pods {
		ni, ok := byName[p.Spec.NodeName]
		if !ok {
			t.Fatalf("pod %s on unknown node %q", p.Name, p.Spec.NodeName)
		}
		ni.AddPod(framework.NewPodInfo(p))
	}
	return out
}

// filter runs a plugin's PreFilter (if any) and Filter over every node and
// returns "" for a fit or "code:message" for a rejection, by node name.
func filter(t testing.TB, pl framework.FilterPlugin, pod *v1.Pod, nodes []*framework.NodeInfo) map[string]string {
	t.Helper()
	ctx := context.Background()
	snap := framework.NewSnapshot(nodes)
	state := framework.NewCycleState()
	pi := framework.NewPodInfo(pod)
	out := map[string]string{}
	if pf, ok := pl.(framework.PreFilterPlugin); ok {
		st := pf.PreFilter(ctx, state, pi, snap)
		switch {
		case st.Code() == framework.Skip:
			for _, n := range nodes {
				out[n.Name()] = ""
			}
			return out
		case st.Code() == framework.Error:
			t.Fatalf("prefilter: %v", st.AsError())
		case !st.IsSuccess():
			for _, n := range nodes {
				out[n.Name()] = statusString(st)
			}
			return out
		}
	}
	for _, n := range nodes {
		out[n.Name()] = statusString(pl.Filter(ctx, state, pi, n))
	}
	return out
}

func statusString(st *framework.Status) string {
	switch st.Code() {
	case framework.Success:
		return ""
	case framework.Unschedulable:
		return "U:" + st.Message()
	case framework.UnschedulableAndUnresolvable:
		return "UU:" + st.Message()
	}
	return fmt.Sprintf("code%d:%s", st.Code(), st.Message())
}

// score runs PreScore, Score and NormalizeScore for every node as feasible
// and returns the normalized scores by node name; nil when PreScore skips.
func score(t testing.TB, pl framework.ScorePlugin, pod *v1.Pod, nodes []*framework.NodeInfo) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	snap := framework.NewSnapshot(nodes)
	state := framework.NewCycleState()
	pi := framework.NewPodInfo(pod)
	if ps, ok := pl.(framework.PreScorePlugin); ok {
		st := ps.PreScore(ctx, state, pi, snap, nodes)
		if st.Code() == framework.Skip {
			return nil
		}
		if !st.IsSuccess() {
			t.Fatalf("prescore: %s", st.Message())
		}
	}
	scores := make([]framework.NodeScore, len(nodes))
	for i, n := range nodes {
		s, st := pl.Score(ctx, state, pi, n)
		if !st.IsSuccess() {
			t.Fatalf("score %s: %s", n.Name(), st.Message())
		}
		scores[i] = framework.NodeScore{Name: n.Name(), Score: s}
	}
	if ns, ok := pl.(framework.NormalizeScorePlugin); ok {
		if st := ns.NormalizeScore(ctx, state, pi, scores); !st.IsSuccess() {
			t.Fatalf("normalize: %s", st.Message())
		}
	}
	out := map[string]int64{}
	for _, s := range scores {
		out[s.Name] = s.Score
	}
	return out
}

func assertMap[V comparable](t *testing.T, got, want map[string]V) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
		return
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s: got %v, want %v (all: %v)", k, got[k], w, got)
		}
	}
}
