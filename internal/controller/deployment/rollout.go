package deployment

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/controller/ownership"
)

// rolling runs one step of a RollingUpdate: scale the new ReplicaSet up
// within maxSurge, else scale old ones down within maxUnavailable, else
// clean up; then report status.
func (s *syncer) rolling(ctx context.Context) (time.Duration, error) {
	newRS, old, err := s.split(ctx, true)
	if err != nil {
		return 0, err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaled, err := s.reconcileNewRS(ctx, all, newRS)
	if err != nil {
		return 0, err
	}
	if scaled {
		return s.rolloutStatus(ctx, all, newRS)
	}
	scaled, err = s.reconcileOldRSs(ctx, all, activeRSs(old), newRS)
	if err != nil {
		return 0, err
	}
	if scaled {
		return s.rolloutStatus(ctx, all, newRS)
	}
	if complete(s.d, &s.d.Status) {
		if err := s.cleanup(ctx, old); err != nil {
			return 0, err
		}
	}
	return s.rolloutStatus(ctx, all, newRS)
}

// recreate scales every old ReplicaSet to zero, waits for their pods to
// be gone, then scales the new one up.
func (s *syncer) recreate(ctx context.Context) (time.Duration, error) {
	newRS, old, err := s.split(ctx, false)
	if err != nil {
		return 0, err
	}
	all := append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaledDown := false
	for _, rs := range activeRSs(old) {
		scaled, _, err := s.scaleRS(ctx, rs, 0)
		if err != nil {
			return 0, err
		}
		scaledDown = scaledDown || scaled
	}
	if scaledDown || s.oldPodsRunning(newRS, old) {
		return s.rolloutStatus(ctx, all, newRS)
	}
	if newRS == nil {
		if newRS, old, err = s.split(ctx, true); err != nil {
			return 0, err
		}
		all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	}
	if _, _, err := s.scaleRS(ctx, newRS, replicas(s.d.Spec.Replicas)); err != nil {
		return 0, err
	}
	if complete(s.d, &s.d.Status) {
		if err := s.cleanup(ctx, old); err != nil {
			return 0, err
		}
	}
	return s.rolloutStatus(ctx, all, newRS)
}

// oldPodsRunning reports whether an old ReplicaSet still has pods that
// have not finished, terminating ones included.
func (s *syncer) oldPodsRunning(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) bool {
	if sumStatus(old, statusReplicas) > 0 {
		return true
	}
	for _, rs := range s.all {
		if newRS != nil && rs.UID == newRS.UID {
			continue
		}
		pods, err := s.c.podIndexer.ByIndex(ownership.IndexName, string(rs.UID))
		if err != nil {
			return true
		}
		for _, o := range pods {
			if p, ok := o.(*corev1.Pod); ok && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				return true
			}
		}
	}
	return false
}

// newRSReplicas is the size the new ReplicaSet may grow to now.
func (s *syncer) newRSReplicas(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	want := replicas(s.d.Spec.Replicas)
	if !isRolling(s.d) {
		return want
	}
	maxTotal := want + MaxSurge(s.d)
	current := sumSpec(all)
	if current >= maxTotal {
		return rsReplicas(newRS)
	}
	up := min(maxTotal-current, want-rsReplicas(newRS))
	return rsReplicas(newRS) + up
}

func (s *syncer) reconcileNewRS(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	want := replicas(s.d.Spec.Replicas)
	switch n := rsReplicas(newRS); {
	case n == want:
		return false, nil
	case n > want:
		scaled, _, err := s.scaleRS(ctx, newRS, want)
		return scaled, err
	}
	scaled, _, err := s.scaleRS(ctx, newRS, s.newRSReplicas(all, newRS))
	return scaled, err
}

// reconcileOldRSs scales old ReplicaSets down as far as maxUnavailable
// allows, unhealthy replicas first.
func (s *syncer) reconcileOldRSs(ctx context.Context, all, old []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (bool, error) {
	if sumSpec(old) == 0 {
		return false, nil
	}
	minAvailable := replicas(s.d.Spec.Replicas) - MaxUnavailable(s.d)
	newUnavailable := rsReplicas(newRS) - newRS.Status.AvailableReplicas
	maxScaledDown := sumSpec(all) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false, nil
	}
	old, cleaned, err := s.cleanupUnhealthy(ctx, old, maxScaledDown)
	if err != nil {
		return false, err
	}
	all = append(append([]*appsv1.ReplicaSet(nil), old...), newRS)
	scaledDown, err := s.scaleDownOld(ctx, all, old)
	if err != nil {
		return false, err
	}
	return cleaned+scaledDown > 0, nil
}

// cleanupUnhealthy removes unavailable replicas of old ReplicaSets, oldest
// first: they do not count towards availability, so they go freely.
func (s *syncer) cleanupUnhealthy(ctx context.Context, old []*appsv1.ReplicaSet, maxCleanup int32) ([]*appsv1.ReplicaSet, int32, error) {
	old = append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(old)
	var total int32
	for i, rs := range old {
		if total >= maxCleanup {
			break
		}
		n := rsReplicas(rs)
		if n == 0 || n == rs.Status.AvailableReplicas {
			continue
		}
		down := min(maxCleanup-total, n-rs.Status.AvailableReplicas)
		_, updated, err := s.scaleRS(ctx, rs, n-down)
		if err != nil {
			return nil, 0, err
		}
		total += down
		old[i] = updated
	}
	return old, total, nil
}

// scaleDownOld scales old ReplicaSets down, oldest first, while available
// pods stay above replicas - maxUnavailable.
func (s *syncer) scaleDownOld(ctx context.Context, all, old []*appsv1.ReplicaSet) (int32, error) {
	minAvailable := replicas(s.d.Spec.Replicas) - MaxUnavailable(s.d)
	available := sumStatus(all, statusAvailable)
	if available <= minAvailable {
		return 0, nil
	}
	old = append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(old)
	var total int32
	want := available - minAvailable
	for _, rs := range old {
		if total >= want {
			break
		}
		n := rsReplicas(rs)
		if n == 0 {
			continue
		}
		down := min(n, want-total)
		if _, _, err := s.scaleRS(ctx, rs, n-down); err != nil {
			return total, err
		}
		total += down
	}
	return total, nil
}

// scaleRS sets rs's replicas (and the replica annotations) to n.
func (s *syncer) scaleRS(ctx context.Context, rs *appsv1.ReplicaSet, n int32) (bool, *appsv1.ReplicaSet, error) {
	sizeChanged := rsReplicas(rs) != n
	cp := rs.DeepCopy()
	annChanged := setReplicasAnnotations(cp, replicas(s.d.Spec.Replicas), replicas(s.d.Spec.Replicas)+MaxSurge(s.d))
	if !sizeChanged && !annChanged {
		return false, rs, nil
	}
	from := rsReplicas(rs)
	cp.Spec.Replicas = &n
	updated, err := s.c.client.AppsV1().ReplicaSets(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return false, nil, fmt.Errorf("scale replicaset %s to %d: %w", rs.Name, n, err)
	}
	if sizeChanged {
		dir := "up"
		if n < from {
			dir = "down"
		}
		s.c.rec.Eventf(s.d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, from, n)
	}
	for i := range s.all {
		if s.all[i].UID == updated.UID {
			s.all[i] = updated
		}
	}
	return sizeChanged, updated, nil
}

// cleanup deletes the oldest old ReplicaSets beyond revisionHistoryLimit
// that have no pods left.
func (s *syncer) cleanup(ctx context.Context, old []*appsv1.ReplicaSet) error {
	if s.d.Spec.RevisionHistoryLimit == nil {
		return nil
	}
	var cleanable []*appsv1.ReplicaSet
	for _, rs := range old {
		if rs.DeletionTimestamp == nil {
			cleanable = append(cleanable, rs)
		}
	}
	diff := len(cleanable) - int(*s.d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return nil
	}
	byRevision(cleanable)
	for _, rs := range cleanable[:diff] {
		if rs.Status.Replicas != 0 || rsReplicas(rs) != 0 || rs.Generation > rs.Status.ObservedGeneration {
			continue
		}
		err := s.c.client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &rs.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete old replicaset %s: %w", rs.Name, err)
		}
	}
	return nil
}

// isScalingEvent reports whether spec.replicas changed since the active
// ReplicaSets were last sized for this Deployment.
func (s *syncer) isScalingEvent() bool {
	want := replicas(s.d.Spec.Replicas)
	for _, rs := range activeRSs(s.all) {
		if desired, ok := intAnnotation(rs, DesiredReplicasAnnotation); ok && desired != want {
			return true
		}
	}
	return false
}

// scaleAndStatus handles a paused Deployment or a scaling event: resize
// the ReplicaSets without rolling, then report status.
func (s *syncer) scaleAndStatus(ctx context.Context) error {
	newRS, old, err := s.split(ctx, false)
	if err != nil {
		return err
	}
	if err := s.scale(ctx, newRS, old); err != nil {
		return err
	}
	if s.d.Spec.Paused {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	newRS, old = s.refresh(newRS, old)
	return s.writeStatus(ctx, append(old, newRS), newRS)
}

// refresh replaces ReplicaSets by the versions this sync wrote.
func (s *syncer) refresh(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	byUID := map[string]*appsv1.ReplicaSet{}
	for _, rs := range s.all {
		byUID[string(rs.UID)] = rs
	}
	if newRS != nil {
		if r, ok := byUID[string(newRS.UID)]; ok {
			newRS = r
		}
	}
	out := make([]*appsv1.ReplicaSet, len(old))
	for i, rs := range old {
		out[i] = rs
		if r, ok := byUID[string(rs.UID)]; ok {
			out[i] = r
		}
	}
	return newRS, out
}

// scale sizes the ReplicaSets to spec.replicas: the only active one takes
// all; a saturated new one empties the old; otherwise a rolling
// Deployment spreads the change in proportion to their sizes.
func (s *syncer) scale(ctx context.Context, newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) error {
	want := replicas(s.d.Spec.Replicas)
	if rs := activeOrLatest(newRS, old); rs != nil {
		_, _, err := s.scaleRS(ctx, rs, want)
		return err
	}
	if saturated(s.d, newRS) {
		for _, rs := range activeRSs(old) {
			if _, _, err := s.scaleRS(ctx, rs, 0); err != nil {
				return err
			}
		}
		return nil
	}
	if !isRolling(s.d) {
		return nil
	}
	all := activeRSs(append(append([]*appsv1.ReplicaSet(nil), old...), newRS))
	var allowed int32
	if want > 0 {
		allowed = want + MaxSurge(s.d)
	}
	toAdd := allowed - sumSpec(all)
	bySize(all, toAdd > 0)
	sizes := make([]int32, len(all))
	var added int32
	for i, rs := range all {
		p := s.proportion(rs, toAdd, added)
		sizes[i] = rsReplicas(rs) + p
		added += p
	}
	for i, rs := range all {
		if i == 0 && toAdd != 0 {
			sizes[0] = max(0, sizes[0]+toAdd-added)
		}
		if _, _, err := s.scaleRS(ctx, rs, sizes[i]); err != nil {
			return err
		}
	}
	return nil
}

// proportion is rs's share of toAdd (of which added is handed out).
func (s *syncer) proportion(rs *appsv1.ReplicaSet, toAdd, added int32) int32 {
	if rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	var fraction int32
	if want := replicas(s.d.Spec.Replicas); want == 0 {
		fraction = -rsReplicas(rs)
	} else {
		total := want + MaxSurge(s.d)
		annotated, ok := intAnnotation(rs, MaxReplicasAnnotation)
		if !ok || annotated == 0 {
			annotated = max(s.d.Status.Replicas, 1)
		}
		fraction = int32(math.Round(float64(rsReplicas(rs))*float64(total)/float64(annotated))) - rsReplicas(rs)
	}
	left := toAdd - added
	if toAdd > 0 {
		return min(fraction, left)
	}
	return max(fraction, left)
}

func activeOrLatest(newRS *appsv1.ReplicaSet, old []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(old) == 0 {
		return nil
	}
	old = append([]*appsv1.ReplicaSet(nil), old...)
	byCreation(old)
	active := activeRSs(append(append([]*appsv1.ReplicaSet(nil), old...), newRS))
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return old[len(old)-1]
	case 1:
		return active[0]
	}
	return nil
}

func saturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	desired, ok := intAnnotation(rs, DesiredReplicasAnnotation)
	want := replicas(d.Spec.Replicas)
	return ok && rsReplicas(rs) == want && desired == want && rs.Status.AvailableReplicas == want
}

// checkPaused records pausing and resuming in the Progressing condition.
func (s *syncer) checkPaused(ctx context.Context) error {
	if !hasProgressDeadline(s.d) {
		return nil
	}
	cond := getCondition(&s.d.Status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == ReasonTimedOut {
		return nil
	}
	pausedCond := cond != nil && cond.Reason == ReasonPaused
	switch {
	case s.d.Spec.Paused && !pausedCond:
		setCondition(&s.d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused", s.now()))
	case !s.d.Spec.Paused && pausedCond:
		setCondition(&s.d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonResumed, "Deployment is resumed", s.now()))
	default:
		return nil
	}
	return s.updateStatus(ctx)
}

// statusOnly reports status for a Deployment being deleted.
func (s *syncer) statusOnly(ctx context.Context) error {
	newRS, old, err := s.split(ctx, false)
	if err != nil {
		return err
	}
	return s.writeStatus(ctx, append(old, newRS), newRS)
}

func (s *syncer) writeStatus(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := s.calculateStatus(all, newRS)
	if reflect.DeepEqual(s.d.Status, st) {
		return nil
	}
	s.d.Status = st
	return s.updateStatus(ctx)
}

// calculateStatus counts replicas over the ReplicaSets and sets the
// Available condition.
func (s *syncer) calculateStatus(all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) appsv1.DeploymentStatus {
	d := s.d
	available := sumStatus(all, statusAvailable)
	st := appsv1.DeploymentStatus{
		ObservedGeneration:  d.Generation,
		Replicas:            sumStatus(all, statusReplicas),
		UpdatedReplicas:     sumStatus([]*appsv1.ReplicaSet{newRS}, statusReplicas),
		ReadyReplicas:       sumStatus(all, statusReady),
		AvailableReplicas:   available,
		UnavailableReplicas: max(0, sumSpec(all)-available),
		CollisionCount:      d.Status.CollisionCount,
	}
	st.Conditions = append(st.Conditions, d.Status.Conditions...)
	if available >= replicas(d.Spec.Replicas)-MaxUnavailable(d) {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, ReasonMinAvailable, "Deployment has minimum availability.", s.now()))
	} else {
		setCondition(&st, newCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, ReasonMinUnavailable, "Deployment does not have minimum availability.", s.now()))
	}
	return st
}

func complete(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	n := replicas(d.Spec.Replicas)
	return st.UpdatedReplicas == n && st.Replicas == n && st.AvailableReplicas == n && st.ObservedGeneration >= d.Generation
}

func progressing(d *appsv1.Deployment, st *appsv1.DeploymentStatus) bool {
	old := d.Status
	return st.UpdatedReplicas > old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas || st.AvailableReplicas > old.AvailableReplicas
}

func timedOut(d *appsv1.Deployment, st *appsv1.DeploymentStatus, now time.Time) bool {
	cond := getCondition(st, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(d) || cond == nil || cond.Reason == ReasonNewRSAvailable {
		return false
	}
	if cond.Reason == ReasonTimedOut {
		return true
	}
	return cond.LastUpdateTime.Add(time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second).Before(now)
}

// rolloutStatus writes status with the Progressing condition of a
// rollout and returns when to look again for the progress deadline.
func (s *syncer) rolloutStatus(ctx context.Context, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) (time.Duration, error) {
	newRS, all = s.refreshAll(newRS, all)
	d := s.d
	st := s.calculateStatus(all, newRS)
	if !hasProgressDeadline(d) {
		removeCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := getCondition(&d.Status, appsv1.DeploymentProgressing)
	isComplete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewRSAvailable
	now := s.now()
	if hasProgressDeadline(d) && !isComplete {
		what := fmt.Sprintf("Deployment %q", d.Name)
		if newRS != nil {
			what = fmt.Sprintf("ReplicaSet %q", newRS.Name)
		}
		switch {
		case complete(d, &st):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSAvailable, what+" has successfully progressed.", now))
		case progressing(d, &st):
			c := newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated, what+" is progressing.", now)
			if cur != nil {
				if cur.Status == corev1.ConditionTrue {
					c.LastTransitionTime = cur.LastTransitionTime
				}
				removeCondition(&st, appsv1.DeploymentProgressing)
			}
			setCondition(&st, c)
		case timedOut(d, &st, now.Time):
			setCondition(&st, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonTimedOut, what+" has timed out progressing.", now))
		}
	}
	if f := replicaFailure(all); f != nil {
		setCondition(&st, *f)
	} else {
		removeCondition(&st, appsv1.DeploymentReplicaFailure)
	}
	if reflect.DeepEqual(d.Status, st) {
		return s.stuckRequeue(&st), nil
	}
	d.Status = st
	if err := s.updateStatus(ctx); err != nil {
		return 0, err
	}
	return s.stuckRequeue(&st), nil
}

func (s *syncer) refreshAll(newRS *appsv1.ReplicaSet, all []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	var old []*appsv1.ReplicaSet
	for _, rs := range all {
		if rs != nil && (newRS == nil || rs.UID != newRS.UID) {
			old = append(old, rs)
		}
	}
	newRS, old = s.refresh(newRS, old)
	return newRS, append(old, newRS)
}

// replicaFailure carries a ReplicaSet's ReplicaFailure condition up.
func replicaFailure(all []*appsv1.ReplicaSet) *appsv1.DeploymentCondition {
	for _, rs := range all {
		if rs == nil {
			continue
		}
		for _, c := range rs.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure {
				return &appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: c.Status, Reason: c.Reason,
					Message: c.Message, LastUpdateTime: c.LastTransitionTime, LastTransitionTime: c.LastTransitionTime}
			}
		}
	}
	return nil
}

// stuckRequeue is when to check the progress deadline of a rollout that
// has not completed.
func (s *syncer) stuckRequeue(st *appsv1.DeploymentStatus) time.Duration {
	cur := getCondition(&s.d.Status, appsv1.DeploymentProgressing)
	if !hasProgressDeadline(s.d) || cur == nil || complete(s.d, st) || cur.Reason == ReasonTimedOut {
		return 0
	}
	after := cur.LastUpdateTime.Add(time.Duration(*s.d.Spec.ProgressDeadlineSeconds) * time.Second).Sub(s.c.clock.Now())
	if after < time.Second {
		return time.Second
	}
	return after + time.Second
}
