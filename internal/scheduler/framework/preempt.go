package framework

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Preemption candidates looked for, as upstream: 10% of nodes, at least 100.
const (
	minCandidateNodesPercentage = 10
	minCandidateNodesAbsolute   = 100
)

// Messages of the preemption outcome, as upstream's.
const (
	msgNotHelpful = "Preemption is not helpful for scheduling"
	msgNoVictims  = "No preemption victims found for incoming pod"
)

// Preemption is the outcome of a successful preemption search.
type Preemption struct {
	// Node is where the pod will fit once Victims are gone.
	Node string
	// Victims are the pods to delete, most important first.
	Victims []*v1.Pod
	// PDBViolations counts victims whose eviction breaks a budget.
	PDBViolations int
}

type candidate struct {
	node          string
	victims       []*PodInfo
	pdbViolations int
}

// Preempt looks for the node where deleting the fewest, least important
// pods makes pod fit, given the diagnosis of the failed cycle. On failure it
// returns nil and a message starting "preemption: " that the caller stores
// in Diagnosis.PostFilterMsg.
func (f *Framework) Preempt(ctx context.Context, snap *Snapshot, pod *v1.Pod, diag Diagnosis) (*Preemption, string, error) {
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever {
		return nil, "preemption: not eligible due to preemptionPolicy=Never", nil
	}
	pi := NewPodInfo(pod)
	if nn := pod.Status.NominatedNodeName; nn != "" {
		if ni := snap.Get(nn); ni != nil && diag.NodeToStatus[nn].Code() != UnschedulableAndUnresolvable {
			for _, p := range ni.Pods {
				if p.Pod.DeletionTimestamp != nil && p.Priority < pi.Priority {
					return nil, "preemption: not eligible due to a terminating pod on the nominated node", nil
				}
			}
		}
	}
	nodes := snap.Nodes()
	var potential []*NodeInfo
	notHelpful := map[string]*Status{}
	for _, n := range nodes {
		st, ok := diag.NodeToStatus[n.Name()]
		if ok && st.Code() == UnschedulableAndUnresolvable {
			notHelpful[n.Name()] = NewStatus(UnschedulableAndUnresolvable, msgNotHelpful)
			continue
		}
		potential = append(potential, n)
	}
	if len(potential) == 0 {
		fe := FitError{NumAllNodes: len(nodes), Diagnosis: Diagnosis{NodeToStatus: notHelpful}}
		return nil, "preemption: " + strings.TrimSuffix(fe.Error(), "."), nil
	}

	state := NewCycleState()
	if st := f.runPreFilters(ctx, state, pi, snap); !st.IsSuccess() {
		if err := st.AsError(); err != nil {
			return nil, "", fmt.Errorf("preemption prefilter %s: %w", st.Plugin(), err)
		}
		return nil, "preemption: " + st.Message(), nil
	}
	want := max(len(potential)*minCandidateNodesPercentage/100, minCandidateNodesAbsolute)
	want = min(want, len(potential))
	f.randMu.Lock()
	offset := f.rand.IntN(len(potential))
	f.randMu.Unlock()

	var (
		mu         sync.Mutex
		candidates []candidate
		found      atomic.Int64
		statuses   = make([]*Status, len(potential))
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	parallelize(cctx, f.profile.Parallelism, len(potential), func(i int) {
		k := (offset + i) % len(potential)
		ni := potential[k].Clone()
		victims, violations, st := f.selectVictims(cctx, state.Clone(), pi, ni, snap)
		if !st.IsSuccess() {
			statuses[k] = st
			return
		}
		if found.Add(1) > int64(want) {
			cancel()
			return
		}
		mu.Lock()
		candidates = append(candidates, candidate{node: ni.Name(), victims: victims, pdbViolations: violations})
		mu.Unlock()
	})
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if len(candidates) == 0 {
		for k, st := range statuses {
			if st != nil {
				if err := st.AsError(); err != nil {
					return nil, "", fmt.Errorf("preemption on node %s: %w", potential[k].Name(), err)
				}
				notHelpful[potential[k].Name()] = st
			}
		}
		fe := FitError{NumAllNodes: len(nodes), Diagnosis: Diagnosis{NodeToStatus: notHelpful}}
		return nil, "preemption: " + strings.TrimSuffix(fe.Error(), "."), nil
	}
	best := pickCandidate(candidates)
	out := &Preemption{Node: best.node, PDBViolations: best.pdbViolations}
	for _, v := range best.victims {
		out.Victims = append(out.Victims, v.Pod)
	}
	return out, "", nil
}

// selectVictims finds the smallest set of lower-priority pods on node whose
// removal lets pod fit: it removes them all, then puts back as many as
// possible, most important first, PDB-protected pods before the others.
// Pods nominated to the node that are at least as important as pod keep
// their room, as in a scheduling cycle, so that two preemptors do not count
// on the same victims.
func (f *Framework) selectVictims(ctx context.Context, state *CycleState, pi *PodInfo, node *NodeInfo, snap *Snapshot) ([]*PodInfo, int, *Status) {
	pdbs := snap.PDBs
	var lower []*PodInfo
	for _, p := range node.Pods {
		if p.Priority < pi.Priority {
			lower = append(lower, p)
		}
	}
	if len(lower) == 0 {
		return nil, 0, NewStatus(UnschedulableAndUnresolvable, msgNoVictims)
	}
	remove := func(p *PodInfo) *Status {
		if err := node.RemovePod(p.Pod); err != nil {
			return AsStatus(err)
		}
		for _, ext := range f.extensions {
			if st := ext.RemovePod(ctx, state, pi, p, node); !st.IsSuccess() {
				return st
			}
		}
		return nil
	}
	add := func(p *PodInfo) *Status {
		node.AddPod(p)
		for _, ext := range f.extensions {
			if st := ext.AddPod(ctx, state, pi, p, node); !st.IsSuccess() {
				return st
			}
		}
		return nil
	}
	for _, p := range lower {
		if st := remove(p); !st.IsSuccess() {
			return nil, 0, st
		}
	}
	if st := f.runFiltersWithNominated(ctx, state, pi, node, snap); !st.IsSuccess() {
		return nil, 0, st
	}
	sort.SliceStable(lower, func(i, j int) bool { return moreImportant(lower[i], lower[j]) })
	violating, nonViolating := splitByPDB(lower, pdbs)
	var victims []*PodInfo
	violations := 0
	reprieve := func(p *PodInfo) (bool, *Status) {
		if st := add(p); !st.IsSuccess() {
			return false, st
		}
		st := f.runFiltersWithNominated(ctx, state, pi, node, snap)
		if st.IsSuccess() {
			return true, nil
		}
		if err := st.AsError(); err != nil {
			return false, st
		}
		if st := remove(p); !st.IsSuccess() {
			return false, st
		}
		victims = append(victims, p)
		return false, nil
	}
	for _, p := range violating {
		kept, st := reprieve(p)
		if st != nil {
			return nil, 0, st
		}
		if !kept {
			violations++
		}
	}
	for _, p := range nonViolating {
		if _, st := reprieve(p); st != nil {
			return nil, 0, st
		}
	}
	sort.SliceStable(victims, func(i, j int) bool { return moreImportant(victims[i], victims[j]) })
	return victims, violations, nil
}

// moreImportant orders by priority, then earlier start.
func moreImportant(a, b *PodInfo) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return startTime(a.Pod).Before(startTime(b.Pod))
}

func startTime(p *v1.Pod) *metav1.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime
	}
	return &p.CreationTimestamp
}

// splitByPDB separates pods whose deletion would exceed a budget's allowed
// disruptions (counting the pods before them) from the rest.
func splitByPDB(pods []*PodInfo, pdbs []*policyv1.PodDisruptionBudget) (violating, nonViolating []*PodInfo) {
	allowed := make([]int32, len(pdbs))
	sels := make([]labels.Selector, len(pdbs))
	for i, pdb := range pdbs {
		allowed[i] = pdb.Status.DisruptionsAllowed
		if s, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil {
			sels[i] = s
		}
	}
	for _, p := range pods {
		bad := false
		if len(p.Pod.Labels) > 0 {
			for i, pdb := range pdbs {
				if pdb.Namespace != p.Pod.Namespace || sels[i] == nil || sels[i].Empty() || !sels[i].Matches(labels.Set(p.Pod.Labels)) {
					continue
				}
				if _, disrupted := pdb.Status.DisruptedPods[p.Pod.Name]; disrupted {
					continue
				}
				allowed[i]--
				if allowed[i] < 0 {
					bad = true
				}
			}
		}
		if bad {
			violating = append(violating, p)
		} else {
			nonViolating = append(nonViolating, p)
		}
	}
	return violating, nonViolating
}

// pickCandidate applies upstream's order: fewest PDB violations, lowest
// highest-victim priority, lowest priority sum, fewest victims, latest
// start of the highest-priority victims, then the first.
func pickCandidate(cs []candidate) candidate {
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].node < cs[j].node })
	type key func(c candidate) int64
	keys := []key{
		func(c candidate) int64 { return -int64(c.pdbViolations) },
		func(c candidate) int64 {
			if len(c.victims) == 0 {
				return math.MaxInt64
			}
			return -int64(c.victims[0].Priority)
		},
		func(c candidate) int64 {
			var sum int64
			for _, v := range c.victims {
				sum += int64(v.Priority) + math.MaxInt32 + 1
			}
			return -sum
		},
		func(c candidate) int64 { return -int64(len(c.victims)) },
		func(c candidate) int64 {
			if len(c.victims) == 0 {
				return math.MaxInt64
			}
			top := c.victims[0].Priority
			var latest int64 = math.MinInt64
			for _, v := range c.victims {
				if v.Priority == top {
					latest = max(latest, startTime(v.Pod).UnixNano())
				}
			}
			return latest
		},
	}
	rest := cs
	for _, k := range keys {
		if len(rest) == 1 {
			break
		}
		best := int64(math.MinInt64)
		for _, c := range rest {
			best = max(best, k(c))
		}
		var next []candidate
		for _, c := range rest {
			if k(c) == best {
				next = append(next, c)
			}
		}
		rest = next
	}
	return rest[0]
}
