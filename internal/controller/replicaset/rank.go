package replicaset

import (
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

// DeletionCostAnnotation lets users rank pods for scale-down: lower cost
// goes first (upstream's controller.kubernetes.io/pod-deletion-cost).
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// PodsToDelete picks n of pods to delete when scaling down, in upstream's
// order of preference: unscheduled before scheduled; Pending before
// Unknown before Running; not ready before ready; lower deletion cost
// first; pods on nodes crowded with related pods first; recently ready
// before long ready; more container restarts first; newer before older.
// related are the pods of the ReplicaSet and its siblings, which measure
// how crowded a node is.
func PodsToDelete(pods, related []*corev1.Pod, n int) []*corev1.Pod {
	if n >= len(pods) {
		return pods
	}
	perNode := map[string]int{}
	for _, p := range related {
		if p.Spec.NodeName != "" {
			perNode[p.Spec.NodeName]++
		}
	}
	ranked := make([]rankedPod, len(pods))
	for i, p := range pods {
		r := 0
		if p.Spec.NodeName != "" {
			r = perNode[p.Spec.NodeName]
		}
		ranked[i] = rankedPod{pod: p, rank: r}
	}
	sort.SliceStable(ranked, func(i, j int) bool { return deleteFirst(ranked[i], ranked[j]) })
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = ranked[i].pod
	}
	return out
}

type rankedPod struct {
	pod  *corev1.Pod
	rank int
}

var phaseOrder = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

// deleteFirst reports whether a should be deleted before b.
func deleteFirst(a, b rankedPod) bool {
	p1, p2 := a.pod, b.pod
	if (p1.Spec.NodeName == "") != (p2.Spec.NodeName == "") {
		return p1.Spec.NodeName == ""
	}
	if o1, o2 := phaseOrder[p1.Status.Phase], phaseOrder[p2.Status.Phase]; o1 != o2 {
		return o1 < o2
	}
	r1, r2 := podstate.Ready(p1), podstate.Ready(p2)
	if r1 != r2 {
		return !r1
	}
	if c1, c2 := deletionCost(p1), deletionCost(p2); c1 != c2 {
		return c1 < c2
	}
	if a.rank != b.rank {
		return a.rank > b.rank
	}
	if r1 && r2 {
		t1, t2 := podstate.ReadyCondition(p1).LastTransitionTime, podstate.ReadyCondition(p2).LastTransitionTime
		if !t1.Equal(&t2) {
			if t1.IsZero() || t2.IsZero() {
				return t1.IsZero()
			}
			return t2.Before(&t1)
		}
	}
	if m1, m2 := podstate.MaxRestarts(p1), podstate.MaxRestarts(p2); m1 != m2 {
		return m1 > m2
	}
	c1, c2 := p1.CreationTimestamp, p2.CreationTimestamp
	if !c1.Equal(&c2) {
		if c1.IsZero() || c2.IsZero() {
			return c1.IsZero()
		}
		return c2.Before(&c1)
	}
	return false
}

func deletionCost(p *corev1.Pod) int64 {
	v, ok := p.Annotations[DeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return n
}
