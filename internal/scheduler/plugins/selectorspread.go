package plugins

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// SelectorSpreadName is the plugin's name.
const SelectorSpreadName = "SelectorSpread"

// zoneWeighting is the share of the zone spread in the score, as upstream.
const zoneWeighting float64 = 2.0 / 3.0

// SelectorSpread spreads the pods of one controller (same controller owner
// reference) or of one service across nodes and zones, for pods that do
// not declare topology spread constraints themselves.
type SelectorSpread struct{}

// Name implements framework.Plugin.
func (SelectorSpread) Name() string { return SelectorSpreadName }

const selectorSpreadKey = "PreScore" + SelectorSpreadName

type selectorSpreadState struct {
	owner     types.UID
	selectors []labels.Selector
	zones     map[string]string
}

func (s *selectorSpreadState) Clone() framework.StateData { return s }

// zoneKey identifies a node's region and zone; "" if it has neither.
func zoneKey(node *v1.Node) string {
	zone, region := node.Labels[v1.LabelTopologyZone], node.Labels[v1.LabelTopologyRegion]
	if zone == "" {
		zone = node.Labels[v1.LabelFailureDomainBetaZone]
	}
	if region == "" {
		region = node.Labels[v1.LabelFailureDomainBetaRegion]
	}
	if zone == "" && region == "" {
		return ""
	}
	return region + ":\x00:" + zone
}

// PreScore implements framework.PreScorePlugin.
func (SelectorSpread) PreScore(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, snap *framework.Snapshot, nodes []*framework.NodeInfo) *framework.Status {
	if len(pod.Pod.Spec.TopologySpreadConstraints) > 0 {
		return framework.NewStatus(framework.Skip)
	}
	s := &selectorSpreadState{zones: make(map[string]string, len(nodes))}
	s.owner = pod.ControllerUID
	if snap.ServiceSelectors != nil {
		s.selectors = snap.ServiceSelectors(pod.Pod)
	}
	if s.owner == "" && len(s.selectors) == 0 {
		return framework.NewStatus(framework.Skip)
	}
	for _, ni := range nodes {
		s.zones[ni.Name()] = zoneKey(ni.Node())
	}
	state.Write(selectorSpreadKey, s)
	return nil
}

func (s *selectorSpreadState) selects(ns string, pi *framework.PodInfo) bool {
	p := pi.Pod
	if p.DeletionTimestamp != nil || p.Namespace != ns {
		return false
	}
	if s.owner != "" && pi.ControllerUID == s.owner {
		return true
	}
	for _, sel := range s.selectors {
		if sel.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

// Score implements framework.ScorePlugin: the number of sibling pods on
// the node.
func (SelectorSpread) Score(_ context.Context, state *framework.CycleState, pod *framework.PodInfo, node *framework.NodeInfo) (int64, *framework.Status) {
	s, _ := state.Read(selectorSpreadKey).(*selectorSpreadState)
	if s == nil {
		return 0, nil
	}
	if len(s.selectors) == 0 {
		// Only the controller: the node keeps the count (a controller's
		// pods share its namespace).
		return int64(node.ControllerPods[s.owner]), nil
	}
	var n int64
	for _, p := range node.Pods {
		if s.selects(pod.Pod.Namespace, p) {
			n++
		}
	}
	return n, nil
}

// NormalizeScore implements framework.NormalizeScorePlugin: fewer siblings
// on the node and in its zone score higher; the zone counts for 2/3.
func (SelectorSpread) NormalizeScore(_ context.Context, state *framework.CycleState, _ *framework.PodInfo, scores []framework.NodeScore) *framework.Status {
	s, _ := state.Read(selectorSpreadKey).(*selectorSpreadState)
	if s == nil {
		return nil
	}
	byZone := map[string]int64{}
	var maxNode, maxZone int64
	for _, sc := range scores {
		maxNode = max(maxNode, sc.Score)
		if z := s.zones[sc.Name]; z != "" {
			byZone[z] += sc.Score
		}
	}
	for _, c := range byZone {
		maxZone = max(maxZone, c)
	}
	zw := zoneWeighting // float64 arithmetic at run time, as upstream
	for i := range scores {
		f := float64(framework.MaxNodeScore)
		if maxNode > 0 {
			f = float64(framework.MaxNodeScore) * float64(maxNode-scores[i].Score) / float64(maxNode)
		}
		if z := s.zones[scores[i].Name]; len(byZone) > 0 && z != "" {
			zs := float64(framework.MaxNodeScore)
			if maxZone > 0 {
				zs = float64(framework.MaxNodeScore) * float64(maxZone-byZone[z]) / float64(maxZone)
			}
			f = f*(1-zw) + zw*zs
		}
		scores[i].Score = int64(f)
	}
	return nil
}
