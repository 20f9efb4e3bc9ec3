package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
	"github.com/skiff-sh/skiff/internal/scheduler/plugins"
	"github.com/skiff-sh/skiff/internal/scheduler/queue"
)

// Event reasons, as upstream's.
const (
	reasonFailedScheduling = "FailedScheduling"
	reasonScheduled        = "Scheduled"
	reasonPreempted        = "Preempted"
)

// scheduleOne takes the next pod off the queue and tries to place it.
func (s *Scheduler) scheduleOne(ctx context.Context) error {
	qp, err := s.queue.Pop(ctx)
	if err != nil {
		return err
	}
	pod := qp.Pod
	name := pod.Spec.SchedulerName
	if name == "" {
		name = plugins.DefaultSchedulerName
	}
	fwk, ok := s.profiles[name]
	if !ok || pod.DeletionTimestamp != nil || pod.Spec.NodeName != "" || s.cache.Contains(pod.UID) {
		s.queue.Done(pod.UID)
		return nil
	}
	start := s.clock.Now()
	snap := s.cache.Snapshot()
	snap.NamespaceLabels, snap.ServiceSelectors, snap.Nominated = s.namespaceLabels, s.serviceSelectors, s.nominees.pods
	res, err := fwk.Schedule(ctx, snap, pod)
	if err != nil {
		s.handleFailure(ctx, fwk, snap, qp, err)
		s.metrics.attempt("unschedulable", s.clock.Since(start))
		return nil
	}
	s.metrics.attempt("scheduled", s.clock.Since(start))
	assumed := pod.DeepCopy()
	assumed.Spec.NodeName = res.Node
	s.nominees.forget(pod)
	if err := s.cache.AssumePod(assumed); err != nil {
		s.queue.AddBackoff(qp)
		return fmt.Errorf("assume %s/%s on %s: %w", pod.Namespace, pod.Name, res.Node, err)
	}
	s.bindAsync(ctx, name, qp, assumed)
	return nil
}

// bindAsync writes the binding on a bounded worker; on failure the
// assumption is forgotten and the pod backs off.
func (s *Scheduler) bindAsync(ctx context.Context, profile string, qp *queue.QueuedPod, assumed *v1.Pod) {
	select {
	case s.bindSem <- struct{}{}:
	case <-ctx.Done():
		s.cache.ForgetPod(assumed)
		s.queue.Done(assumed.UID)
		return
	}
	s.async.Add(1)
	go func() {
		defer s.async.Done()
		defer func() { <-s.bindSem }()
		binding := &v1.Binding{
			ObjectMeta: metav1.ObjectMeta{Namespace: assumed.Namespace, Name: assumed.Name, UID: assumed.UID},
			Target:     v1.ObjectReference{Kind: "Node", Name: assumed.Spec.NodeName},
		}
		err := s.client.CoreV1().Pods(assumed.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
		if err != nil {
			s.cache.ForgetPod(assumed)
			if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || ctx.Err() != nil {
				// Deleted, or bound by someone else; nothing to retry.
				s.queue.Done(assumed.UID)
				s.log.Debug("binding dropped", "pod", klogKey(assumed), "err", err)
				return
			}
			s.log.Warn("binding failed", "pod", klogKey(assumed), "node", assumed.Spec.NodeName, "err", err)
			s.queue.AddBackoff(qp)
			s.queue.MoveAllToActiveOrBackoff(nil) // the node's space is free again
			s.recorders[profile].Eventf(assumed, v1.EventTypeWarning, reasonFailedScheduling, "Binding rejected: %v", err)
			return
		}
		s.cache.FinishBinding(assumed)
		s.queue.Done(assumed.UID)
		latency := s.clock.Since(qp.Timestamp)
		if !qp.InitialAttempt.IsZero() {
			latency = s.clock.Since(qp.InitialAttempt)
		}
		s.metrics.bound(latency)
		if s.cfg.OnBound != nil {
			s.cfg.OnBound(assumed.Namespace, assumed.Name, assumed.Spec.NodeName, latency)
		}
		s.recorders[profile].Eventf(assumed, v1.EventTypeNormal, reasonScheduled, "Successfully assigned %s/%s to %s",
			assumed.Namespace, assumed.Name, assumed.Spec.NodeName)
	}()
}

func klogKey(p *v1.Pod) string { return p.Namespace + "/" + p.Name }

// handleFailure requeues a pod that did not fit, tries preemption, and
// reports the reason through an Event and the PodScheduled condition.
func (s *Scheduler) handleFailure(ctx context.Context, fwk *framework.Framework, snap *framework.Snapshot, qp *queue.QueuedPod, err error) {
	pod := qp.Pod
	profile := fwk.Profile().SchedulerName
	var fe *framework.FitError
	reason := v1.PodReasonUnschedulable
	msg := err.Error()
	nominated := ""
	switch {
	case errors.As(err, &fe):
		snap.PDBs = s.pdbs()
		pre, postMsg, perr := fwk.Preempt(ctx, snap, pod, fe.Diagnosis)
		switch {
		case perr != nil:
			s.log.Error("preemption", "pod", klogKey(pod), "err", perr)
		case pre != nil:
			nominated = pre.Node
			s.nominees.set(pod, pre.Node)
			s.evict(ctx, profile, pod, pre)
		default:
			fe.Diagnosis.PostFilterMsg = postMsg
		}
		snap.PDBs = nil
		qp.UnschedulablePlugins = fe.Diagnosis.UnschedulablePlugins
		msg = fe.Error()
		s.queue.AddUnschedulable(qp)
	case errors.Is(err, framework.ErrNoNodesAvailable):
		s.queue.AddUnschedulable(qp)
	default:
		reason = v1.PodReasonSchedulerError
		s.log.Error("scheduling failed", "pod", klogKey(pod), "err", err)
		s.queue.AddBackoff(qp)
	}
	s.recorders[profile].Event(pod, v1.EventTypeWarning, reasonFailedScheduling, msg)
	s.setUnschedulable(ctx, pod, reason, msg, nominated)
}

func (s *Scheduler) pdbs() []*policyv1.PodDisruptionBudget {
	if s.pdbLister == nil {
		return nil
	}
	list, err := s.pdbLister.List(labels.Everything())
	if err != nil {
		s.log.Warn("list PDBs", "err", err)
	}
	return list
}

// setUnschedulable writes PodScheduled=False (and nominatedNodeName) with a
// strategic merge patch of the status subresource, unless already so.
func (s *Scheduler) setUnschedulable(ctx context.Context, pod *v1.Pod, reason, msg, nominated string) {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == reason && c.Message == msg &&
			nominated == pod.Status.NominatedNodeName {
			return
		}
	}
	cond := v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: reason, Message: msg,
		LastTransitionTime: metav1.NewTime(s.clock.Now())}
	status := map[string]any{"conditions": []v1.PodCondition{cond}}
	if nominated != "" {
		status["nominatedNodeName"] = nominated
	}
	s.patchStatus(ctx, pod, status)
}

func (s *Scheduler) patchStatus(ctx context.Context, pod *v1.Pod, status map[string]any) {
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		s.log.Error("encode status patch", "err", err)
		return
	}
	s.async.Add(1)
	go func() {
		defer s.async.Done()
		_, err := s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
		if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			s.log.Warn("update pod status", "pod", klogKey(pod), "err", err)
		}
	}()
}

// evict marks and deletes the victims of a preemption (gracefully).
func (s *Scheduler) evict(ctx context.Context, profile string, preemptor *v1.Pod, pre *framework.Preemption) {
	s.log.Info("preempting", "pod", klogKey(preemptor), "node", pre.Node, "victims", len(pre.Victims), "pdbViolations", pre.PDBViolations)
	for _, victim := range pre.Victims {
		s.async.Add(1)
		go func() {
			defer s.async.Done()
			cond := v1.PodCondition{Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: v1.PodReasonPreemptionByScheduler,
				Message: fmt.Sprintf("%s: preempting to accommodate a higher priority pod", profile), LastTransitionTime: metav1.NewTime(s.clock.Now())}
			if patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.PodCondition{cond}}}); err == nil {
				_, _ = s.client.CoreV1().Pods(victim.Namespace).Patch(ctx, victim.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
			}
			uid := victim.UID
			err := s.client.CoreV1().Pods(victim.Namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) {
				s.log.Warn("delete preemption victim", "pod", klogKey(victim), "err", err)
				return
			}
			s.recorders[profile].Eventf(victim, v1.EventTypeNormal, reasonPreempted, "Preempted by pod %s on node %s", preemptor.UID, pre.Node)
		}()
	}
}
