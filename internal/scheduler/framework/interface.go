package framework

import (
	"context"
	"sync"
)

// Plugin is anything with a name.
type Plugin interface {
	Name() string
}

// PreFilterPlugin computes per-cycle state before filtering. Returning Skip
// means the plugin's Filter is not needed for this pod; a rejection rejects
// the pod on every node.
type PreFilterPlugin interface {
	Plugin
	PreFilter(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot) *Status
}

// PreFilterExtensions updates PreFilter state when preemption tentatively
// removes or restores a pod on node.
type PreFilterExtensions interface {
	AddPod(ctx context.Context, state *CycleState, pod, added *PodInfo, node *NodeInfo) *Status
	RemovePod(ctx context.Context, state *CycleState, pod, removed *PodInfo, node *NodeInfo) *Status
}

// FilterPlugin decides whether pod may run on node. It is called in
// parallel over nodes and must not write to state.
type FilterPlugin interface {
	Plugin
	Filter(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) *Status
}

// PreScorePlugin computes per-cycle state before scoring the feasible nodes.
// Returning Skip means the plugin's Score is not needed.
type PreScorePlugin interface {
	Plugin
	PreScore(ctx context.Context, state *CycleState, pod *PodInfo, snap *Snapshot, nodes []*NodeInfo) *Status
}

// ScorePlugin ranks a feasible node. It is called in parallel over nodes.
type ScorePlugin interface {
	Plugin
	Score(ctx context.Context, state *CycleState, pod *PodInfo, node *NodeInfo) (int64, *Status)
}

// NormalizeScorePlugin rescales a ScorePlugin's raw scores to 0..MaxNodeScore.
type NormalizeScorePlugin interface {
	NormalizeScore(ctx context.Context, state *CycleState, pod *PodInfo, scores []NodeScore) *Status
}

// NodeScore is one node's score.
type NodeScore struct {
	Name  string
	Score int64
}

// StateData is per-cycle data a plugin stores in CycleState.
type StateData interface {
	// Clone returns a copy that preemption may change independently.
	Clone() StateData
}

// CycleState is the scratch space of one scheduling cycle. Writes happen in
// PreFilter and PreScore (sequential); Filter and Score only read.
type CycleState struct {
	mu         sync.RWMutex
	data       map[string]StateData
	skipFilter map[string]bool
	skipScore  map[string]bool
}

// NewCycleState returns an empty state.
func NewCycleState() *CycleState {
	return &CycleState{data: map[string]StateData{}, skipFilter: map[string]bool{}, skipScore: map[string]bool{}}
}

// Read returns the data stored under key, nil if none.
func (c *CycleState) Read(key string) StateData {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.data[key]
}

// Write stores data under key.
func (c *CycleState) Write(key string, d StateData) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.data[key] = d
}

// Clone copies the state and every StateData in it.
func (c *CycleState) Clone() *CycleState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := NewCycleState()
	for k, v := range c.data {
		n.data[k] = v.Clone()
	}
	for k, v := range c.skipFilter {
		n.skipFilter[k] = v
	}
	for k, v := range c.skipScore {
		n.skipScore[k] = v
	}
	return n
}
