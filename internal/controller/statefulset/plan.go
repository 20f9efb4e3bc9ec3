package statefulset

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/controller/history"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
	"github.com/skiff-sh/skiff/internal/controller/replicaset"
)

// Labels a StatefulSet's pods carry, as upstream.
const (
	PodNameLabel  = appsv1.StatefulSetPodNameLabel
	PodIndexLabel = appsv1.PodIndexLabel
)

var ordinalName = regexp.MustCompile(`^(.*)-([0-9]+)$`)

// ordinal is the ordinal in a pod's name if the pod belongs to set by
// name (<set>-<ordinal>), and -1 otherwise.
func ordinal(set *appsv1.StatefulSet, p *corev1.Pod) int {
	m := ordinalName.FindStringSubmatch(p.Name)
	if m == nil || m[1] != set.Name {
		return -1
	}
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return -1
	}
	return n
}

func replicas(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

// partition is the lowest ordinal a RollingUpdate replaces.
func partition(set *appsv1.StatefulSet) int {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.Partition == nil {
		return 0
	}
	return int(*ru.Partition)
}

func rollingUpdate(set *appsv1.StatefulSet) bool {
	return set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
}

// world is what a decision looks at: the set, its pods (including
// terminating ones), the current and update revisions and their
// templates, and the time.
type world struct {
	set                             *appsv1.StatefulSet
	pods                            []*corev1.Pod
	current, update                 *appsv1.ControllerRevision
	currentTemplate, updateTemplate *corev1.PodTemplateSpec
	now                             time.Time
}

// plan is what one sync does.
type plan struct {
	create []*corev1.Pod
	del    []*corev1.Pod
	// relabel are pods whose identity labels must be set.
	relabel []*corev1.Pod
}

func terminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

func runningAndReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && podstate.Ready(p)
}

func (w *world) available(p *corev1.Pod) bool {
	return runningAndReady(p) && podstate.Available(p, w.set.Spec.MinReadySeconds, w.now)
}

// healthy pods let an ordered rollout move on.
func (w *world) healthy(p *corev1.Pod) bool { return !terminating(p) && w.available(p) }

func revisionOf(p *corev1.Pod) string { return p.Labels[history.HashLabel] }

// newPod is the pod for ordinal: from the current revision's template for
// ordinals below the partition of a RollingUpdate, from the update
// revision's otherwise.
func (w *world) newPod(ord int) *corev1.Pod {
	tmpl, rev := w.updateTemplate, w.update
	if rollingUpdate(w.set) {
		limit := partition(w.set)
		if w.set.Spec.UpdateStrategy.RollingUpdate == nil {
			limit = int(w.set.Status.CurrentReplicas)
		}
		if ord < startOrdinal(w.set)+limit {
			tmpl, rev = w.currentTemplate, w.current
		}
	}
	return newPod(w.set, tmpl, ord, rev.Name)
}

// newPod is set's pod with ordinal made from template, labelled with the
// revision, named <set>-<ordinal> with hostname and subdomain.
func newPod(set *appsv1.StatefulSet, template *corev1.PodTemplateSpec, ord int, revision string) *corev1.Pod {
	p := replicaset.PodFromTemplate(template, set, ownership.ControllerRef(set, Kind))
	p.GenerateName = ""
	p.Name = fmt.Sprintf("%s-%d", set.Name, ord)
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[history.HashLabel] = revision
	setIdentity(p, ord)
	p.Spec.Hostname = p.Name
	p.Spec.Subdomain = set.Spec.ServiceName
	return p
}

func setIdentity(p *corev1.Pod, ord int) {
	p.Labels[PodNameLabel] = p.Name
	p.Labels[PodIndexLabel] = strconv.Itoa(ord)
}

func identityMatches(p *corev1.Pod, ord int) bool {
	return p.Labels[PodNameLabel] == p.Name && p.Labels[PodIndexLabel] == strconv.Itoa(ord)
}

// decide is the sync's plan and the status the pods show, as upstream's
// StatefulSet update: missing pods are created in ordinal order (with
// OrderedReady, one at a time, each after its predecessors are Running and
// Ready), finished pods are replaced, pods beyond replicas go highest
// ordinal first, and a RollingUpdate deletes the highest-ordinal pod at
// or above the partition that is not at the update revision, one at a
// time, once all others are healthy.
func decide(w *world) (plan, appsv1.StatefulSetStatus) {
	set := w.set
	st := appsv1.StatefulSetStatus{ObservedGeneration: set.Generation, CollisionCount: set.Status.CollisionCount,
		CurrentRevision: w.current.Name, UpdateRevision: w.update.Name}
	n, start := replicas(set), startOrdinal(set)
	slots := make([]*corev1.Pod, n)
	var condemned []*corev1.Pod
	for _, p := range w.pods {
		st.Replicas++
		if runningAndReady(p) {
			st.ReadyReplicas++
			if w.available(p) {
				st.AvailableReplicas++
			}
		}
		if !terminating(p) {
			if revisionOf(p) == w.current.Name {
				st.CurrentReplicas++
			}
			if revisionOf(p) == w.update.Name {
				st.UpdatedReplicas++
			}
		}
		if ord := ordinal(set, p); ord >= start && ord < start+n {
			slots[ord-start] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	sort.SliceStable(condemned, func(i, j int) bool { return ordinal(set, condemned[i]) > ordinal(set, condemned[j]) })
	if st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas && st.Replicas == int32(n) {
		st.CurrentRevision, st.CurrentReplicas = st.UpdateRevision, st.UpdatedReplicas
	}
	var p plan
	ordered := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	for i, pod := range slots {
		switch {
		case pod == nil:
			p.create = append(p.create, w.newPod(start+i))
		case terminating(pod):
		case finished(pod):
			p.del = append(p.del, pod)
		case !w.healthy(pod) && ordered:
			return p, st
		case !identityMatches(pod, start+i):
			p.relabel = append(p.relabel, pod)
			continue
		default:
			continue
		}
		if ordered {
			return p, st
		}
	}
	for _, pod := range condemned {
		if !terminating(pod) {
			p.del = append(p.del, pod)
		}
		if ordered {
			return p, st
		}
	}
	if !rollingUpdate(set) || len(p.create)+len(p.del) > 0 {
		return p, st
	}
	for i := n - 1; i >= partition(set) && i >= 0; i-- {
		pod := slots[i]
		if revisionOf(pod) != w.update.Name && !terminating(pod) {
			p.del = append(p.del, pod)
			return p, st
		}
		if !w.healthy(pod) {
			break
		}
	}
	return p, st
}

// nextAvailable is how long until a ready pod becomes available under
// minReadySeconds, so that the rollout moves on; 0 when none waits.
func nextAvailable(w *world) time.Duration {
	return podstate.NextAvailable(w.pods, w.set.Spec.MinReadySeconds, w.now)
}
