package plugins

import (
	"context"
	"fmt"
	"maps"
	"math"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/skiff-sh/skiff/internal/nodeaffinity"
	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// PodTopologySpreadName is the plugin's name.
const PodTopologySpreadName = "PodTopologySpread"

// Reasons of PodTopologySpread.
const (
	ErrReasonConstraintsNotMatch = "node(s) didn't match pod topology spread constraints"
	ErrReasonNodeLabelNotMatch   = ErrReasonConstraintsNotMatch + " (missing required label)"
)

// PodTopologySpread enforces DoNotSchedule topology spread constraints
// (maxSkew, minDomains, nodeAffinityPolicy, nodeTaintsPolicy, matchLabelKeys)
// and scores ScheduleAnyway ones.
type PodTopologySpread struct{}

// Name implements framework.Plugin.
func (PodTopologySpread) Name() string { return PodTopologySpreadName }

type spreadConstraint struct {
	maxSkew       int32
	key           string
	selector      labels.Selector
	minDomains    int32
	honorAffinity bool
	honorTaints   bool
}

func spreadConstraints(pod *v1.Pod, action v1.UnsatisfiableConstraintAction) ([]spreadConstraint, error) {
	var out []spreadConstraint
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable != action {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if err != nil {
			return nil, fmt.Errorf("topology spread constraint %s: %w", c.TopologyKey, err)
		}
		if c.LabelSelector == nil {
			sel = labels.Nothing()
		}
		for _, k := range c.MatchLabelKeys {
			if v, ok := pod.Labels[k]; ok {
				r, err := labels.NewRequirement(k, selection.Equals, []string{v})
				if err != nil {
					return nil, fmt.Errorf("matchLabelKeys %s: %w", k, err)
				}
				sel = sel.Add(*r)
			}
		}
		sc := spreadConstraint{maxSkew: c.MaxSkew, key: c.TopologyKey, selector: sel, minDomains: 1, honorAffinity: true}
		if c.MinDomains != nil {
			sc.minDomains = *c.MinDomains
		}
		if c.NodeAffinityPolicy != nil {
			sc.honorAffinity = *c.NodeAffinityPolicy == v1.NodeInclusionPolicyHonor
		}
		if c.NodeTaintsPolicy != nil {
			sc.honorTaints = *c.NodeTaintsPolicy == v1.NodeInclusionPolicyHonor
		}
		out = append(out, sc)
	}
	return out, nil
}

// eligible applies the node inclusion policies.
func (c *spreadConstraint) eligible(pod *v1.Pod, node *v1.Node) bool {
	if c.honorAffinity && !nodeaffinity.Matches(&pod.Spec, node) {
		return false
	}
	if c.honorTaints {
		for i := range node.Spec.Taints {
			t := &node.Spec.Taints[i]
			if (t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute) && !tolerates(pod.Spec.Tolerations, t) {
				return false
			}
		}
	}
	return true
}

func hasAllKeys(nodeLabels map[string]string, cs []spreadConstraint) bool {
	for _, c := range cs {
		if _, ok := nodeLabels[c.key]; !ok {
			return false
		}
	}
	return true
}

func (c *spreadConstraint) matches(ns string, p *v1.Pod) bool {
	return p.Namespace == ns && p.DeletionTimestamp == nil && c.selector.Matches(labels.Set(p.Labels))
}

func (c *spreadConstraint) count(ns string, pods []*framework.PodInfo) int {
	n := 0
	for _, p := range pods {
		if c.matches(ns, p.Pod) {
			n++
		}
	}
	return n
}

const podTopologySpreadKey = "PreFilter" + PodTopologySpreadName

type spreadState struct {
	constraints []spreadConstraint
	// counts[i] maps each domain (value of constraint i's key on an
	// eligible node) to the number of matching pods in it.
	counts []map[string]int
	// minMatch[i] is the smallest count of constraint i.
	minMatch []int
}

func (s *spreadState) Clone() framework.StateData {
	c := &spreadState{constraints: s.constraints, counts: make([]map[string]int, len(s.counts)), minMatch: append([]int(nil), s.minMatch...)}
	for i, m := range s.counts {
		c.counts[i] = maps.Clone(m)
	}
	return c
}

func (s *spreadState) recomputeMin(i int) {
	m := math.MaxInt32
	for _, n := range s.counts[i] {
		m = min(m, n)
	}
	s.minMatch[i] = m
}

// PreFilter implements framework.PreFilterPlugin.
func (PodTopologySpread) PreFilter(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, snap *framework.Snapshot) *framework.Status {
	cs, err := spreadConstraints(pod.Pod, v1.DoNotSchedule)
	if err != nil {
		return framework.AsStatus(err)
	}
	if len(cs) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	s := &spreadState{constraints: cs, counts: make([]map[string]int, len(cs)), minMatch: make([]int, len(cs))}
	for i := range cs {
		s.counts[i] = map[string]int{}
	}
	for _, ni := range snap.Nodes() {
		node := ni.Node()
		if !hasAllKeys(node.Labels, cs) {
			continue
		}
		for i := range cs {
			c := &cs[i]
			if !c.eligible(pod.Pod, node) {
				continue
			}
			s.counts[i][node.Labels[c.key]] += c.count(pod.Pod.Namespace, ni.Pods)
		}
	}
	for i := range cs {
		s.recomputeMin(i)
	}
	state.Write(podTopologySpreadKey, s)
	return nil
}

func (PodTopologySpread) update(state *framework.CycleState, pod, other *framework.PodInfo, ni *framework.NodeInfo, delta int) *framework.Status {
	s, ok := state.Read(podTopologySpreadKey).(*spreadState)
	if !ok {
		return nil
	}
	node := ni.Node()
	if !hasAllKeys(node.Labels, s.constraints) {
		return nil
	}
	for i := range s.constraints {
		c := &s.constraints[i]
		if !c.eligible(pod.Pod, node) || !c.matches(pod.Pod.Namespace, other.Pod) {
			continue
		}
		s.counts[i][node.Labels[c.key]] += delta
		s.recomputeMin(i)
	}
	return nil
}

// AddPod implements framework.PreFilterExtensions.
func (p PodTopologySpread) AddPod(_ context.Context, state *framework.CycleState, pod, added *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	return p.update(state, pod, added, node, 1)
}

// RemovePod implements framework.PreFilterExtensions.
func (p PodTopologySpread) RemovePod(_ context.Context, state *framework.CycleState, pod, removed *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	return p.update(state, pod, removed, node, -1)
}

// Filter implements framework.FilterPlugin: placing the pod must keep
// count(domain)+self - min(count) within maxSkew for every constraint,
// where min is 0 while fewer than minDomains domains exist.
func (PodTopologySpread) Filter(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	s, ok := state.Read(podTopologySpreadKey).(*spreadState)
	if !ok {
		return nil
	}
	for i := range s.constraints {
		c := &s.constraints[i]
		v, ok := node.Node().Labels[c.key]
		if !ok {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonNodeLabelNotMatch)
		}
		self := 0
		if c.selector.Matches(labels.Set(pod.Pod.Labels)) {
			self = 1
		}
		minMatch := s.minMatch[i]
		if int32(len(s.counts[i])) < c.minDomains {
			minMatch = 0
		}
		if s.counts[i][v]+self-minMatch > int(c.maxSkew) {
			return framework.NewStatus(framework.Unschedulable, ErrReasonConstraintsNotMatch)
		}
	}
	return nil
}

const podTopologySpreadScoreKey = "PreScore" + PodTopologySpreadName

type spreadScoreState struct {
	constraints []spreadConstraint
	ignored     map[string]bool
	// pairCounts[i] maps domains of constraint i to matching pods; unused
	// for the hostname key, which is counted on the node itself.
	pairCounts []map[string]int
	weights    []float64
}

func (s *spreadScoreState) Clone() framework.StateData { return s }

// PreScore implements framework.PreScorePlugin.
func (PodTopologySpread) PreScore(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, snap *framework.Snapshot, nodes []*framework.NodeInfo) *framework.Status {
	cs, err := spreadConstraints(pod.Pod, v1.ScheduleAnyway)
	if err != nil {
		return framework.AsStatus(err)
	}
	if len(cs) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	s := &spreadScoreState{constraints: cs, ignored: map[string]bool{}, pairCounts: make([]map[string]int, len(cs)), weights: make([]float64, len(cs))}
	for i := range cs {
		s.pairCounts[i] = map[string]int{}
	}
	sizes := make([]int, len(cs))
	for _, ni := range nodes {
		l := ni.Node().Labels
		if !hasAllKeys(l, cs) {
			s.ignored[ni.Name()] = true
			continue
		}
		for i, c := range cs {
			if c.key == v1.LabelHostname {
				sizes[i]++
				continue
			}
			if _, seen := s.pairCounts[i][l[c.key]]; !seen {
				s.pairCounts[i][l[c.key]] = 0
				sizes[i]++
			}
		}
	}
	for _, ni := range snap.Nodes() {
		node := ni.Node()
		if !hasAllKeys(node.Labels, cs) {
			continue
		}
		for i := range cs {
			c := &cs[i]
			if c.key == v1.LabelHostname || !c.eligible(pod.Pod, node) {
				continue
			}
			if _, ok := s.pairCounts[i][node.Labels[c.key]]; ok {
				s.pairCounts[i][node.Labels[c.key]] += c.count(pod.Pod.Namespace, ni.Pods)
			}
		}
	}
	for i := range cs {
		s.weights[i] = math.Log(float64(sizes[i] + 2))
	}
	state.Write(podTopologySpreadScoreKey, s)
	return nil
}

// Score implements framework.ScorePlugin: matching pods in the node's
// domains, weighted by the log of the number of domains; fewer is better.
func (PodTopologySpread) Score(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	s, _ := state.Read(podTopologySpreadScoreKey).(*spreadScoreState)
	if s == nil || s.ignored[node.Name()] {
		return 0, nil
	}
	var score float64
	for i := range s.constraints {
		c := &s.constraints[i]
		var cnt int
		if c.key == v1.LabelHostname {
			cnt = c.count(pod.Pod.Namespace, node.Pods)
		} else {
			cnt = s.pairCounts[i][node.Node().Labels[c.key]]
		}
		score += float64(cnt)*s.weights[i] + float64(c.maxSkew-1)
	}
	return int64(math.Round(score)), nil
}

// NormalizeScore implements framework.NormalizeScorePlugin: the node with
// the fewest matching pods gets 100, ignored nodes 0.
func (PodTopologySpread) NormalizeScore(_ context.Context, state *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	s, _ := state.Read(podTopologySpreadScoreKey).(*spreadScoreState)
	if s == nil {
		return nil
	}
	var lo, hi int64 = math.MaxInt64, 0
	for _, sc := range scores {
		if s.ignored[sc.Name] {
			continue
		}
		lo, hi = min(lo, sc.Score), max(hi, sc.Score)
	}
	for i := range scores {
		switch {
		case s.ignored[scores[i].Name]:
			scores[i].Score = 0
		case hi == 0:
			scores[i].Score = framework.MaxNodeScore
		default:
			scores[i].Score = framework.MaxNodeScore * (hi + lo - scores[i].Score) / hi
		}
	}
	return nil
}
