package framework

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
)

// Defaults of the node sampling, as upstream.
const (
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
	defaultParallelism               = 16
)

// WeightedScore is a score plugin with its weight in the sum.
type WeightedScore struct {
	Plugin ScorePlugin
	Weight int64
}

// Profile is one scheduling profile: the plugins run for the pods whose
// schedulerName is SchedulerName.
type Profile struct {
	SchedulerName string
	// Filters run in order; a plugin that also implements PreFilterPlugin
	// has its PreFilter run first.
	Filters []FilterPlugin
	// Scores are summed with their weights.
	Scores []WeightedScore
	// PercentageOfNodesToScore limits how many feasible nodes are looked
	// for: 0 means adaptive (50% - nodes/125, at least 5%, at least 100
	// nodes); 100 means all.
	PercentageOfNodesToScore int32
	// Parallelism bounds the workers filtering and scoring nodes.
	Parallelism int
	// Seed seeds tie-breaking; 0 picks a random seed.
	Seed uint64
}

// Framework runs one profile's plugins. It is safe for one scheduling cycle
// at a time; its Preempt may run concurrently with nothing else either.
type Framework struct {
	profile    Profile
	preFilters []PreFilterPlugin
	extensions []PreFilterExtensions
	filters    []FilterPlugin
	preScores  []PreScorePlugin
	scores     []WeightedScore
	normalize  []NormalizeScorePlugin

	nextStart atomic.Int64
	randMu    sync.Mutex
	rand      *rand.Rand
}

// New builds a framework for p.
func New(p Profile) *Framework {
	if p.Parallelism <= 0 {
		p.Parallelism = defaultParallelism
	}
	seed := p.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	f := &Framework{profile: p, filters: p.Filters, scores: p.Scores, rand: rand.New(rand.NewPCG(seed, seed^0x5eed))}
	for _, fp := range p.Filters {
		if pf, ok := fp.(PreFilterPlugin); ok {
			f.preFilters = append(f.preFilters, pf)
		}
		if ext, ok := fp.(PreFilterExtensions); ok {
			f.extensions = append(f.extensions, ext)
		}
	}
	for _, s := range p.Scores {
		ps, _ := s.Plugin.(PreScorePlugin)
		f.preScores = append(f.preScores, ps)
		ns, _ := s.Plugin.(NormalizeScorePlugin)
		f.normalize = append(f.normalize, ns)
	}
	return f
}

// Profile returns the framework's profile.
func (f *Framework) Profile() Profile { return f.profile }

// Result is a scheduling decision.
type Result struct {
	// Node is the chosen node.
	Node string
	// Evaluated counts nodes filtered; Feasible those that passed.
	Evaluated, Feasible int
}

// Schedule picks a node for pod. It returns a *FitError when no node fits,
// ErrNoNodesAvailable for an empty cluster, or another error.
func (f *Framework) Schedule(ctx context.Context, snap *Snapshot, pod *v1.Pod) (Result, error) {
	nodes := snap.Nodes()
	if len(nodes) == 0 {
		return Result{}, ErrNoNodesAvailable
	}
	pi := NewPodInfo(pod)
	state := NewCycleState()
	if st := f.runPreFilters(ctx, state, pi, snap); !st.IsSuccess() {
		if err := st.AsError(); err != nil {
			return Result{}, fmt.Errorf("prefilter %s: %w", st.Plugin(), err)
		}
		diag := Diagnosis{NodeToStatus: make(map[string]*Status, len(nodes)), PreFilterMsg: st.Message(),
			UnschedulablePlugins: map[string]struct{}{st.Plugin(): {}}}
		for _, n := range nodes {
			diag.NodeToStatus[n.Name()] = st
		}
		return Result{}, &FitError{Pod: pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	feasible, diag, err := f.findFeasible(ctx, state, pi, snap)
	if err != nil {
		return Result{}, err
	}
	if len(feasible) == 0 {
		return Result{}, &FitError{Pod: pod, NumAllNodes: len(nodes), Diagnosis: diag}
	}
	evaluated := len(feasible) + len(diag.NodeToStatus)
	if len(feasible) == 1 {
		return Result{Node: feasible[0].Name(), Evaluated: evaluated, Feasible: 1}, nil
	}
	scores, err := f.score(ctx, state, pi, snap, feasible)
	if err != nil {
		return Result{}, err
	}
	return Result{Node: f.selectHost(scores), Evaluated: evaluated, Feasible: len(feasible)}, nil
}

func (f *Framework) runPreFilters(ctx context.Context, state *CycleState, pi *PodInfo, snap *Snapshot) *Status {
	for _, pf := range f.preFilters {
		st := pf.PreFilter(ctx, state, pi, snap)
		switch st.Code() {
		case Success:
		case Skip:
			state.skipFilter[pf.Name()] = true
		default:
			return st.WithPlugin(pf.Name())
		}
	}
	return nil
}

// RunFilters runs every filter for one node and returns the first rejection.
func (f *Framework) RunFilters(ctx context.Context, state *CycleState, pi *PodInfo, node *NodeInfo) *Status {
	for _, fp := range f.filters {
		if state.skipFilter[fp.Name()] {
			continue
		}
		if st := fp.Filter(ctx, state, pi, node); !st.IsSuccess() {
			return st.WithPlugin(fp.Name())
		}
	}
	return nil
}

// runFiltersWithNominated reserves room for pods nominated to node that
// are at least as important as pi: the filters must pass with them added
// and, as upstream, also without them (so that pod affinity to a nominated
// pod that is not there yet is not counted).
func (f *Framework) runFiltersWithNominated(ctx context.Context, state *CycleState, pi *PodInfo, node *NodeInfo, snap *Snapshot) *Status {
	if snap.Nominated != nil {
		var with *NodeInfo
		var withState *CycleState
		for _, np := range snap.Nominated(node.Name()) {
			if np.Pod.UID == pi.Pod.UID || np.Priority < pi.Priority {
				continue
			}
			if with == nil {
				with, withState = node.Clone(), state.Clone()
			}
			with.AddPod(np)
			for _, ext := range f.extensions {
				if st := ext.AddPod(ctx, withState, pi, np, with); !st.IsSuccess() {
					return st
				}
			}
		}
		if with != nil {
			if st := f.RunFilters(ctx, withState, pi, with); !st.IsSuccess() {
				return st
			}
		}
	}
	return f.RunFilters(ctx, state, pi, node)
}

// numFeasibleNodesToFind is how many feasible nodes are enough to score.
func (f *Framework) numFeasibleNodesToFind(all int) int {
	pct := f.profile.PercentageOfNodesToScore
	if all < minFeasibleNodesToFind || pct >= 100 {
		return all
	}
	if pct <= 0 {
		pct = int32(50 - all/125)
		if pct < minFeasibleNodesPercentageToFind {
			pct = minFeasibleNodesPercentageToFind
		}
	}
	n := all * int(pct) / 100
	if n < minFeasibleNodesToFind {
		return minFeasibleNodesToFind
	}
	return n
}

// findFeasible filters nodes in parallel, starting where the previous cycle
// stopped so that all nodes get their turn, until enough fit.
func (f *Framework) findFeasible(ctx context.Context, state *CycleState, pi *PodInfo, snap *Snapshot) ([]*NodeInfo, Diagnosis, error) {
	nodes := snap.Nodes()
	n := len(nodes)
	want := f.numFeasibleNodesToFind(n)
	start := int(f.nextStart.Load()) % n
	feasible := make([]*NodeInfo, want)
	statuses := make([]*Status, n)
	var found, processed atomic.Int64
	var firstErr error
	var errOnce sync.Once
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parallelize(cctx, f.profile.Parallelism, n, func(i int) {
		node := nodes[(start+i)%n]
		st := f.runFiltersWithNominated(cctx, state, pi, node, snap)
		processed.Add(1)
		if st.IsSuccess() {
			k := found.Add(1)
			if k > int64(want) {
				cancel()
				return
			}
			feasible[k-1] = node
			return
		}
		if err := st.AsError(); err != nil {
			errOnce.Do(func() { firstErr = fmt.Errorf("filter %s on node %s: %w", st.Plugin(), node.Name(), err) })
			cancel()
			return
		}
		statuses[(start+i)%n] = st
	})
	if firstErr != nil {
		return nil, Diagnosis{}, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, Diagnosis{}, err
	}
	f.nextStart.Store(int64((start + int(processed.Load())) % n))
	feasible = feasible[:min(int(found.Load()), want)]
	diag := Diagnosis{NodeToStatus: map[string]*Status{}, UnschedulablePlugins: map[string]struct{}{}}
	for i, st := range statuses {
		if st != nil {
			diag.NodeToStatus[nodes[i].Name()] = st
			diag.UnschedulablePlugins[st.Plugin()] = struct{}{}
		}
	}
	return feasible, diag, nil
}

// score returns the weighted total score of each feasible node.
func (f *Framework) score(ctx context.Context, state *CycleState, pi *PodInfo, snap *Snapshot, nodes []*NodeInfo) ([]NodeScore, error) {
	active := make([]int, 0, len(f.scores))
	for i, s := range f.scores {
		if s.Weight == 0 {
			continue
		}
		if ps := f.preScores[i]; ps != nil {
			st := ps.PreScore(ctx, state, pi, snap, nodes)
			if st.Code() == Skip {
				continue
			}
			if !st.IsSuccess() {
				return nil, fmt.Errorf("prescore %s: %s", ps.Name(), st.Message())
			}
		}
		active = append(active, i)
	}
	perPlugin := make([][]NodeScore, len(active))
	for k := range perPlugin {
		perPlugin[k] = make([]NodeScore, len(nodes))
	}
	var firstErr error
	var errOnce sync.Once
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parallelize(cctx, f.profile.Parallelism, len(nodes), func(j int) {
		for k, i := range active {
			s, st := f.scores[i].Plugin.Score(cctx, state, pi, nodes[j])
			if !st.IsSuccess() {
				errOnce.Do(func() { firstErr = fmt.Errorf("score %s: %s", f.scores[i].Plugin.Name(), st.Message()) })
				cancel()
				return
			}
			perPlugin[k][j] = NodeScore{Name: nodes[j].Name(), Score: s}
		}
	})
	if firstErr != nil {
		return nil, firstErr
	}
	total := make([]NodeScore, len(nodes))
	for j := range nodes {
		total[j].Name = nodes[j].Name()
	}
	for k, i := range active {
		if ns := f.normalize[i]; ns != nil {
			if st := ns.NormalizeScore(ctx, state, pi, perPlugin[k]); !st.IsSuccess() {
				return nil, fmt.Errorf("normalize %s: %s", f.scores[i].Plugin.Name(), st.Message())
			}
		}
		w := f.scores[i].Weight
		for j := range perPlugin[k] {
			total[j].Score += perPlugin[k][j].Score * w
		}
	}
	return total, nil
}

// selectHost returns the highest-scored node, breaking ties uniformly at
// random (reservoir sampling).
func (f *Framework) selectHost(scores []NodeScore) string {
	f.randMu.Lock()
	defer f.randMu.Unlock()
	best, ties := 0, 1
	for i := 1; i < len(scores); i++ {
		switch {
		case scores[i].Score > scores[best].Score:
			best, ties = i, 1
		case scores[i].Score == scores[best].Score:
			ties++
			if f.rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return scores[best].Name
}

// DefaultNormalizeScore scales scores so that the largest becomes
// MaxNodeScore; reverse turns the scale around (largest raw becomes 0).
func DefaultNormalizeScore(reverse bool, scores []NodeScore) {
	var maxCount int64
	for _, s := range scores {
		maxCount = max(maxCount, s.Score)
	}
	if maxCount == 0 {
		if reverse {
			for i := range scores {
				scores[i].Score = MaxNodeScore
			}
		}
		return
	}
	for i := range scores {
		s := MaxNodeScore * scores[i].Score / maxCount
		if reverse {
			s = MaxNodeScore - s
		}
		scores[i].Score = s
	}
}
