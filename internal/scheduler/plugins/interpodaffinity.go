package plugins

import (
	"context"
	"fmt"
	"maps"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// InterPodAffinityName is the plugin's name.
const InterPodAffinityName = "InterPodAffinity"

// Reasons of InterPodAffinity.
const (
	ErrReasonAffinityRulesNotMatch             = "node(s) didn't match pod affinity rules"
	ErrReasonAntiAffinityRulesNotMatch         = "node(s) didn't match pod anti-affinity rules"
	ErrReasonExistingAntiAffinityRulesNotMatch = "node(s) didn't satisfy existing pods anti-affinity rules"
)

// InterPodAffinity enforces required pod affinity and anti-affinity (the
// incoming pod's, and existing pods' anti-affinity against it) over any
// topology key, and scores preferred terms.
type InterPodAffinity struct {
	// HardPodAffinityWeight is the score given for an existing pod's
	// required affinity term that the incoming pod matches; default 1.
	HardPodAffinityWeight int32
}

// Name implements framework.Plugin.
func (*InterPodAffinity) Name() string { return InterPodAffinityName }

type topologyPair struct{ key, value string }

type topologyCounts map[topologyPair]int64

func (t topologyCounts) add(key string, nodeLabels map[string]string, delta int64) {
	v, ok := nodeLabels[key]
	if !ok {
		return
	}
	p := topologyPair{key, v}
	t[p] += delta
	if t[p] == 0 {
		delete(t, p)
	}
}

const interPodAffinityKey = "PreFilter" + InterPodAffinityName

type affinityState struct {
	existingAnti topologyCounts
	affinity     topologyCounts
	anti         topologyCounts
	nsLabels     func(string) labels.Set
}

func (s *affinityState) Clone() framework.StateData {
	return &affinityState{existingAnti: maps.Clone(s.existingAnti), affinity: maps.Clone(s.affinity), anti: maps.Clone(s.anti), nsLabels: s.nsLabels}
}

// PreFilter implements framework.PreFilterPlugin: it counts, per topology
// pair, existing pods whose anti-affinity rejects the pod, and pods matching
// the pod's own affinity and anti-affinity terms.
func (*InterPodAffinity) PreFilter(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, snap *framework.Snapshot) *framework.Status {
	if pod.ParseErr != nil {
		return framework.AsStatus(fmt.Errorf("parsing pod affinity: %w", pod.ParseErr))
	}
	s := &affinityState{existingAnti: topologyCounts{}, affinity: topologyCounts{}, anti: topologyCounts{}, nsLabels: snap.NamespaceLabelsOf}
	for _, ni := range snap.NodesWithRequiredAntiAffinityPods() {
		for _, ep := range ni.PodsWithRequiredAntiAffinity {
			s.addExistingAnti(pod, ep, ni, 1)
		}
	}
	if len(pod.RequiredAffinity) == 0 && len(pod.RequiredAntiAffinity) == 0 {
		if len(s.existingAnti) == 0 {
			return framework.NewStatus(framework.Skip)
		}
	} else {
		for _, ni := range snap.Nodes() {
			for _, ep := range ni.Pods {
				s.addIncoming(pod, ep, ni, 1)
			}
		}
	}
	state.Write(interPodAffinityKey, s)
	return nil
}

func (s *affinityState) addExistingAnti(pod, existing *framework.PodInfo, ni *framework.NodeInfo, delta int64) {
	for i := range existing.RequiredAntiAffinity {
		t := &existing.RequiredAntiAffinity[i]
		if t.Matches(pod.Pod, s.nsLabels) {
			s.existingAnti.add(t.TopologyKey, ni.Node().Labels, delta)
		}
	}
}

func (s *affinityState) addIncoming(pod, existing *framework.PodInfo, ni *framework.NodeInfo, delta int64) {
	if len(pod.RequiredAffinity) > 0 && matchesAll(pod.RequiredAffinity, existing, s.nsLabels) {
		for _, t := range pod.RequiredAffinity {
			s.affinity.add(t.TopologyKey, ni.Node().Labels, delta)
		}
	}
	for i := range pod.RequiredAntiAffinity {
		t := &pod.RequiredAntiAffinity[i]
		if t.Matches(existing.Pod, s.nsLabels) {
			s.anti.add(t.TopologyKey, ni.Node().Labels, delta)
		}
	}
}

func matchesAll(terms []framework.AffinityTerm, p *framework.PodInfo, ns func(string) labels.Set) bool {
	for i := range terms {
		if !terms[i].Matches(p.Pod, ns) {
			return false
		}
	}
	return len(terms) > 0
}

func (p *InterPodAffinity) update(state *framework.CycleState, pod, other *framework.PodInfo, node *framework.NodeInfo, delta int64) *framework.Status {
	s, ok := state.Read(interPodAffinityKey).(*affinityState)
	if !ok {
		return nil
	}
	s.addExistingAnti(pod, other, node, delta)
	s.addIncoming(pod, other, node, delta)
	return nil
}

// AddPod implements framework.PreFilterExtensions.
func (p *InterPodAffinity) AddPod(_ context.Context, state *framework.CycleState, pod, added *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	return p.update(state, pod, added, node, 1)
}

// RemovePod implements framework.PreFilterExtensions.
func (p *InterPodAffinity) RemovePod(_ context.Context, state *framework.CycleState, pod, removed *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	return p.update(state, pod, removed, node, -1)
}

// Filter implements framework.FilterPlugin.
func (*InterPodAffinity) Filter(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) *framework.Status {
	s, ok := state.Read(interPodAffinityKey).(*affinityState)
	if !ok {
		return nil
	}
	nodeLabels := node.Node().Labels
	if len(pod.RequiredAffinity) > 0 {
		podsExist := true
		for _, t := range pod.RequiredAffinity {
			v, ok := nodeLabels[t.TopologyKey]
			if !ok {
				return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
			}
			if s.affinity[topologyPair{t.TopologyKey, v}] <= 0 {
				podsExist = false
			}
		}
		// The first pod of a group that has affinity to itself may go
		// anywhere with the topology labels.
		if !podsExist && !(len(s.affinity) == 0 && matchesAll(pod.RequiredAffinity, pod, s.nsLabels)) {
			return framework.NewStatus(framework.UnschedulableAndUnresolvable, ErrReasonAffinityRulesNotMatch)
		}
	}
	for _, t := range pod.RequiredAntiAffinity {
		if v, ok := nodeLabels[t.TopologyKey]; ok && s.anti[topologyPair{t.TopologyKey, v}] > 0 {
			return framework.NewStatus(framework.Unschedulable, ErrReasonAntiAffinityRulesNotMatch)
		}
	}
	if len(s.existingAnti) > 0 {
		for k, v := range nodeLabels {
			if s.existingAnti[topologyPair{k, v}] > 0 {
				return framework.NewStatus(framework.Unschedulable, ErrReasonExistingAntiAffinityRulesNotMatch)
			}
		}
	}
	return nil
}

const interPodAffinityScoreKey = "PreScore" + InterPodAffinityName

// affinityScore maps topology key → value → score.
type affinityScore map[string]map[string]int64

func (a affinityScore) Clone() framework.StateData { return a }

func (a affinityScore) add(key string, nodeLabels map[string]string, w int64) {
	v, ok := nodeLabels[key]
	if !ok || w == 0 {
		return
	}
	m := a[key]
	if m == nil {
		m = map[string]int64{}
		a[key] = m
	}
	m[v] += w
}

// PreScore implements framework.PreScorePlugin.
func (p *InterPodAffinity) PreScore(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, snap *framework.Snapshot, _ []*framework.NodeInfo) *framework.Status {
	own := len(pod.PreferredAffinity)+len(pod.PreferredAntiAffinity) > 0
	nodes := snap.NodesWithAffinityPods()
	if own {
		nodes = snap.Nodes()
	}
	if len(nodes) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	hard := int64(p.HardPodAffinityWeight)
	if p.HardPodAffinityWeight == 0 {
		hard = 1
	}
	ns := snap.NamespaceLabelsOf
	sc := affinityScore{}
	for _, ni := range nodes {
		pods := ni.PodsWithAffinity
		if own {
			pods = ni.Pods
		}
		l := ni.Node().Labels
		for _, ep := range pods {
			for i := range pod.PreferredAffinity {
				if t := &pod.PreferredAffinity[i]; t.Matches(ep.Pod, ns) {
					sc.add(t.TopologyKey, l, int64(t.Weight))
				}
			}
			for i := range pod.PreferredAntiAffinity {
				if t := &pod.PreferredAntiAffinity[i]; t.Matches(ep.Pod, ns) {
					sc.add(t.TopologyKey, l, -int64(t.Weight))
				}
			}
			for i := range ep.RequiredAffinity {
				if t := &ep.RequiredAffinity[i]; t.Matches(pod.Pod, ns) {
					sc.add(t.TopologyKey, l, hard)
				}
			}
			for i := range ep.PreferredAffinity {
				if t := &ep.PreferredAffinity[i]; t.Matches(pod.Pod, ns) {
					sc.add(t.TopologyKey, l, int64(t.Weight))
				}
			}
			for i := range ep.PreferredAntiAffinity {
				if t := &ep.PreferredAntiAffinity[i]; t.Matches(pod.Pod, ns) {
					sc.add(t.TopologyKey, l, -int64(t.Weight))
				}
			}
		}
	}
	if len(sc) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	state.Write(interPodAffinityScoreKey, sc)
	return nil
}

// Score implements framework.ScorePlugin.
func (*InterPodAffinity) Score(_ context.Context, state *framework.CycleState, _ *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	sc, _ := state.Read(interPodAffinityScoreKey).(affinityScore)
	var s int64
	for key, vals := range sc {
		if v, ok := node.Node().Labels[key]; ok {
			s += vals[v]
		}
	}
	return s, nil
}

// NormalizeScore implements framework.NormalizeScorePlugin: min-max scaling.
func (*InterPodAffinity) NormalizeScore(_ context.Context, _ *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	if len(scores) == 0 {
		return nil
	}
	lo, hi := scores[0].Score, scores[0].Score
	for _, s := range scores {
		lo, hi = min(lo, s.Score), max(hi, s.Score)
	}
	for i := range scores {
		if hi == lo {
			scores[i].Score = 0
			continue
		}
		scores[i].Score = int64(float64(framework.MaxNodeScore) * float64(scores[i].Score-lo) / float64(hi-lo))
	}
	return nil
}
