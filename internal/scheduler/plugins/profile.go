package plugins

import (
	"fmt"
	"slices"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// ProfileConfig configures one scheduling profile. It is the YAML shape of
// a profile in the scheduler's configuration file.
type ProfileConfig struct {
	// SchedulerName is the spec.schedulerName served; default
	// "default-scheduler".
	SchedulerName string `json:"schedulerName,omitempty"`
	// ScoringStrategy is LeastAllocated (default) or MostAllocated.
	ScoringStrategy string `json:"scoringStrategy,omitempty"`
	// Resources weighs the resources NodeResourcesFit scores.
	Resources []ResourceWeight `json:"resources,omitempty"`
	// Weights overrides score plugin weights by plugin name; 0 disables.
	Weights map[string]int64 `json:"weights,omitempty"`
	// Disabled names filter or score plugins to leave out.
	Disabled []string `json:"disabled,omitempty"`
	// PercentageOfNodesToScore: 0 adaptive, 100 all nodes.
	PercentageOfNodesToScore int32 `json:"percentageOfNodesToScore,omitempty"`
	// HardPodAffinityWeight scores existing pods' required affinity; default 1.
	HardPodAffinityWeight int32 `json:"hardPodAffinityWeight,omitempty"`
}

// DefaultSchedulerName is the schedulerName of pods that name none.
const DefaultSchedulerName = "default-scheduler"

// DefaultWeight returns the default weight of a score plugin (upstream's
// defaults; SelectorSpread 1), 0 for an unknown name.
func DefaultWeight(name string) int64 {
	switch name {
	case TaintTolerationName:
		return 3
	case NodeAffinityName, PodTopologySpreadName, InterPodAffinityName:
		return 2
	case NodeResourcesFitName, BalancedAllocationName, ImageLocalityName, SelectorSpreadName:
		return 1
	}
	return 0
}

// NewProfile builds the framework profile for cfg with the default plugin
// set: filters in upstream's order, then scores with their weights.
func NewProfile(cfg ProfileConfig, parallelism int) (framework.Profile, error) {
	if cfg.SchedulerName == "" {
		cfg.SchedulerName = DefaultSchedulerName
	}
	if cfg.PercentageOfNodesToScore < 0 || cfg.PercentageOfNodesToScore > 100 {
		return framework.Profile{}, fmt.Errorf("profile %s: percentageOfNodesToScore %d out of range 0..100", cfg.SchedulerName, cfg.PercentageOfNodesToScore)
	}
	if cfg.HardPodAffinityWeight < 0 || cfg.HardPodAffinityWeight > 100 {
		return framework.Profile{}, fmt.Errorf("profile %s: hardPodAffinityWeight %d out of range 0..100", cfg.SchedulerName, cfg.HardPodAffinityWeight)
	}
	fit, err := NewNodeResourcesFit(cfg.ScoringStrategy, cfg.Resources)
	if err != nil {
		return framework.Profile{}, fmt.Errorf("profile %s: %w", cfg.SchedulerName, err)
	}
	ipa := &InterPodAffinity{HardPodAffinityWeight: cfg.HardPodAffinityWeight}
	filters := []framework.FilterPlugin{
		NodeUnschedulable{}, NodeReady{}, NodeName{}, TaintToleration{}, NodeAffinity{},
		NodePorts{}, fit, PodTopologySpread{}, ipa,
	}
	scores := []framework.ScorePlugin{
		TaintToleration{}, NodeAffinity{}, PodTopologySpread{}, ipa, fit,
		&BalancedAllocation{Resources: cfg.Resources}, ImageLocality{}, SelectorSpread{},
	}
	known := map[string]bool{NodeUnschedulableName: true, NodeReadyName: true, NodeNameName: true, NodePortsName: true}
	for _, s := range scores {
		known[s.Name()] = true
	}
	for _, name := range cfg.Disabled {
		if !known[name] {
			return framework.Profile{}, fmt.Errorf("profile %s: unknown plugin %q", cfg.SchedulerName, name)
		}
	}
	for name, w := range cfg.Weights {
		if DefaultWeight(name) == 0 {
			return framework.Profile{}, fmt.Errorf("profile %s: %q is not a score plugin", cfg.SchedulerName, name)
		}
		if w < 0 || w > 100 {
			return framework.Profile{}, fmt.Errorf("profile %s: weight %d of %s out of range 0..100", cfg.SchedulerName, w, name)
		}
	}
	p := framework.Profile{SchedulerName: cfg.SchedulerName, PercentageOfNodesToScore: cfg.PercentageOfNodesToScore, Parallelism: parallelism}
	for _, f := range filters {
		if !slices.Contains(cfg.Disabled, f.Name()) {
			p.Filters = append(p.Filters, f)
		}
	}
	for _, s := range scores {
		w := DefaultWeight(s.Name())
		if o, ok := cfg.Weights[s.Name()]; ok {
			w = o
		}
		if w == 0 || slices.Contains(cfg.Disabled, s.Name()) {
			continue
		}
		p.Scores = append(p.Scores, framework.WeightedScore{Plugin: s, Weight: w})
	}
	return p, nil
}
