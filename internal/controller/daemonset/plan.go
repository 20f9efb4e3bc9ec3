package daemonset

import (
	"slices"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-sh/skiff/internal/controller/history"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

// plan is what one sync does: create a daemon pod on each of createOn and
// delete each of del.
type plan struct {
	createOn []string
	del      []*corev1.Pod
	// failedOn are the nodes whose failed pods are deleted now; their
	// back-off grows.
	failedOn []string
	// retryAfter, when > 0, is when a failed pod's back-off ends.
	retryAfter time.Duration
}

func (p *plan) retry(d time.Duration) {
	if p.retryAfter == 0 || d < p.retryAfter {
		p.retryAfter = d
	}
}

func (p *plan) delete(pod *corev1.Pod) {
	for _, d := range p.del {
		if d.UID == pod.UID {
			return
		}
	}
	p.del = append(p.del, pod)
}

// world is what a decision looks at: the DaemonSet, the nodes, its live
// pods (not being deleted) by the node they target, the current
// revision's hash and the time.
type world struct {
	ds     *appsv1.DaemonSet
	nodes  []*corev1.Node
	byNode map[string][]*corev1.Pod
	hash   string
	now    time.Time
	// backoff is how long failed pods on node must still be left alone
	// (0: replace them now); nil means no back-off.
	backoff func(node string) time.Duration
}

// updated reports whether pod was made from the DaemonSet's current
// template: its revision hash or its template generation matches.
func (w *world) updated(p *corev1.Pod) bool {
	if w.hash != "" && p.Labels[history.HashLabel] == w.hash {
		return true
	}
	gen, ok := w.ds.Annotations[appsv1.DeprecatedTemplateGeneration]
	return ok && p.Labels[templateGenerationLabel] == gen
}

func (w *world) available(p *corev1.Pod) bool {
	return podstate.Available(p, w.ds.Spec.MinReadySeconds, w.now)
}

func (w *world) surging() bool {
	return w.ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType && w.maxSurge(1) > 0
}

// maxSurge and maxUnavailable resolve the rolling update's bounds against
// desired pods, rounding up as upstream.
func (w *world) maxSurge(desired int) int {
	ru := w.ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxSurge == nil {
		return 0
	}
	n, _ := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
	return n
}

func (w *world) maxUnavailable(desired int) int {
	ru := w.ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil {
		return 1
	}
	n, _ := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, desired, true)
	return n
}

// templateGenerationLabel carries the DaemonSet's deprecated template
// generation on its pods, as upstream.
const templateGenerationLabel = "pod-template-generation"

func failed(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed }

// decide is the sync's plan: the manage step (a pod on every node that
// should run one, none elsewhere, failed and duplicate pods replaced) and,
// for RollingUpdate, the rolling update step.
func decide(w *world) plan {
	var p plan
	known := map[string]bool{}
	for _, n := range w.nodes {
		known[n.Name] = true
		run, keep := shouldRun(n, w.ds)
		pods := w.byNode[n.Name]
		switch {
		case run:
			var live []*corev1.Pod
			anyFailed := false
			for _, pod := range pods {
				if !failed(pod) {
					live = append(live, pod)
					continue
				}
				// A kubelet rejecting the pod would make this a hot loop:
				// failed pods are replaced with back-off, the new pod
				// created once the failed one is gone.
				anyFailed = true
				if w.backoff != nil {
					if d := w.backoff(n.Name); d > 0 {
						p.retry(d)
						continue
					}
				}
				p.delete(pod)
				if !slices.Contains(p.failedOn, n.Name) {
					p.failedOn = append(p.failedOn, n.Name)
				}
			}
			if len(live) == 0 {
				if !anyFailed {
					p.createOn = append(p.createOn, n.Name)
				}
				continue
			}
			for _, extra := range w.duplicates(live) {
				p.delete(extra)
			}
		case !keep:
			for _, pod := range pods {
				p.delete(pod)
			}
		}
	}
	// Pods pinned to nodes that are gone.
	for name, pods := range w.byNode {
		if !known[name] {
			for _, pod := range pods {
				p.delete(pod)
			}
		}
	}
	if w.ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		w.rollingUpdate(&p)
	}
	sort.Strings(p.createOn)
	return p
}

// duplicates are the pods on one node beyond the one that should stay:
// the oldest stays; while surging, the oldest old and the oldest updated
// pod both stay.
func (w *world) duplicates(live []*corev1.Pod) []*corev1.Pod {
	if len(live) < 2 {
		return nil
	}
	live = append([]*corev1.Pod(nil), live...)
	oldestFirst(live)
	if !w.surging() {
		return live[1:]
	}
	var extra []*corev1.Pod
	var haveOld, haveNew bool
	for _, p := range live {
		have := &haveOld
		if w.updated(p) {
			have = &haveNew
		}
		if *have {
			extra = append(extra, p)
		}
		*have = true
	}
	return extra
}

// onNode splits a node's pods into the updated and the old one; ok is
// false when there is more than one of either (manage cleans up first).
func (w *world) onNode(pods []*corev1.Pod) (newPod, oldPod *corev1.Pod, ok bool) {
	for _, p := range pods {
		if failed(p) {
			continue
		}
		slot := &oldPod
		if w.updated(p) {
			slot = &newPod
		}
		if *slot != nil {
			return nil, nil, false
		}
		*slot = p
	}
	return newPod, oldPod, true
}

// rollingUpdate replaces old pods within the bounds, as upstream: with no
// surge, old pods are deleted (unavailable ones at once, available ones up
// to maxUnavailable) and manage recreates them; with surge, an updated pod
// is created next to the old one, which goes once the new one is
// available.
func (w *world) rollingUpdate(p *plan) {
	var nodes []string
	for _, n := range w.nodes {
		run, keep := shouldRun(n, w.ds)
		if run || (keep && len(w.byNode[n.Name]) > 0) {
			nodes = append(nodes, n.Name)
		}
	}
	desired := 0
	for _, n := range w.nodes {
		if run, _ := shouldRun(n, w.ds); run {
			desired++
		}
	}
	surge, unavailable := w.maxSurge(desired), w.maxUnavailable(desired)
	if desired > 0 && surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	if surge == 0 {
		numUnavailable := 0
		var allowed, candidates []*corev1.Pod
		for _, name := range nodes {
			newPod, oldPod, ok := w.onNode(w.byNode[name])
			switch {
			case !ok, newPod == nil && oldPod == nil, newPod != nil && oldPod != nil:
				numUnavailable++ // manage handles this node
			case newPod != nil:
				if !w.available(newPod) {
					numUnavailable++
				}
			case !w.available(oldPod):
				allowed = append(allowed, oldPod)
				numUnavailable++
			case numUnavailable < unavailable:
				candidates = append(candidates, oldPod)
			}
		}
		room := min(max(unavailable-numUnavailable, 0), len(candidates))
		for _, pod := range append(allowed, candidates[:room]...) {
			p.delete(pod)
		}
		return
	}
	numSurge := 0
	var allowed, candidates []string
	for _, name := range nodes {
		newPod, oldPod, ok := w.onNode(w.byNode[name])
		switch {
		case !ok:
			numSurge++
		case oldPod == nil:
			// nothing to replace; manage creates a missing pod
		case newPod == nil && !w.available(oldPod):
			allowed = append(allowed, name)
			numSurge++
		case newPod == nil && numSurge < surge:
			candidates = append(candidates, name)
		case newPod == nil:
		case !w.available(newPod):
			numSurge++
		default:
			p.delete(oldPod)
		}
	}
	room := min(max(surge-numSurge, 0), len(candidates))
	p.createOn = append(p.createOn, allowed...)
	p.createOn = append(p.createOn, candidates[:room]...)
}

// status counts the daemon pods as upstream: per node that should run one,
// the oldest pod decides ready, available and updated.
func status(w *world) appsv1.DaemonSetStatus {
	st := appsv1.DaemonSetStatus{ObservedGeneration: w.ds.Generation, CollisionCount: w.ds.Status.CollisionCount}
	for _, n := range w.nodes {
		run, _ := shouldRun(n, w.ds)
		var pods []*corev1.Pod
		for _, p := range w.byNode[n.Name] {
			if podstate.Active(p) {
				pods = append(pods, p)
			}
		}
		if !run {
			if len(pods) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(pods) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		oldestFirst(pods)
		pod := pods[0]
		if podstate.Ready(pod) {
			st.NumberReady++
			if w.available(pod) {
				st.NumberAvailable++
			}
		}
		if w.updated(pod) {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	return st
}

// nextAvailable is how long until a ready pod becomes available under
// minReadySeconds, so that status catches up; 0 when none waits.
func nextAvailable(w *world) time.Duration {
	var pods []*corev1.Pod
	for _, ps := range w.byNode {
		pods = append(pods, ps...)
	}
	return podstate.NextAvailable(pods, w.ds.Spec.MinReadySeconds, w.now)
}

// templateGeneration is the DaemonSet's deprecated template generation
// label value for its pods, if it has one.
func templateGeneration(ds *appsv1.DaemonSet) (string, bool) {
	v, ok := ds.Annotations[appsv1.DeprecatedTemplateGeneration]
	if !ok {
		return "", false
	}
	if _, err := strconv.ParseInt(v, 10, 64); err != nil {
		return "", false
	}
	return v, true
}
