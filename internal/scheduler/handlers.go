package scheduler

import (
	"reflect"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/scheduler/plugins"
	"github.com/skiff-sh/skiff/internal/scheduler/queue"
)

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func terminal(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
}

// responsible reports whether one of our profiles schedules pod.
func (s *Scheduler) responsible(p *v1.Pod) bool {
	name := p.Spec.SchedulerName
	if name == "" {
		name = plugins.DefaultSchedulerName
	}
	_, ok := s.profiles[name]
	return ok
}

// withPriority returns pod with spec.priority (and preemptionPolicy)
// resolved from its PriorityClass when admission left them unset.
func (s *Scheduler) withPriority(pod *v1.Pod) *v1.Pod {
	if pod.Spec.Priority != nil {
		return pod
	}
	var value int32
	var policy *v1.PreemptionPolicy
	if s.pcLister != nil {
		if name := pod.Spec.PriorityClassName; name != "" {
			if pc, err := s.pcLister.Get(name); err == nil {
				value, policy = pc.Value, pc.PreemptionPolicy
			}
		} else if pcs, err := s.pcLister.List(labels.Everything()); err == nil {
			for _, pc := range pcs {
				if pc.GlobalDefault {
					value, policy = pc.Value, pc.PreemptionPolicy
					break
				}
			}
		}
	}
	cp := *pod
	cp.Spec.Priority = &value
	if cp.Spec.PreemptionPolicy == nil {
		cp.Spec.PreemptionPolicy = policy
	}
	return &cp
}

func (s *Scheduler) onPodAdd(obj any) {
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	switch {
	case pod.Spec.NodeName != "":
		if terminal(pod) {
			return
		}
		s.cache.AddPod(s.withPriority(pod))
		s.queue.MoveAllToActiveOrBackoff(failedOn(affinityPlugins))
	case s.responsible(pod) && !terminal(pod) && pod.DeletionTimestamp == nil:
		p := s.withPriority(pod)
		s.nominees.onPending(p)
		s.queue.Add(p)
	}
}

func (s *Scheduler) onPodUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*v1.Pod)
	pod, ok2 := newObj.(*v1.Pod)
	if !ok1 || !ok2 {
		return
	}
	if pod.Spec.NodeName != "" {
		if old.Spec.NodeName == "" {
			s.queue.Delete(pod) // bound, by us or by someone else
			s.nominees.forget(pod)
		}
		if terminal(pod) {
			s.cache.RemovePod(pod)
			s.queue.MoveAllToActiveOrBackoff(nil)
			return
		}
		s.cache.UpdatePod(s.withPriority(pod))
		if old.Spec.NodeName == "" || !reflect.DeepEqual(old.Labels, pod.Labels) {
			s.queue.MoveAllToActiveOrBackoff(failedOn(affinityPlugins))
		}
		return
	}
	if !s.responsible(pod) || s.cache.IsAssumed(pod.UID) {
		return
	}
	if terminal(pod) || pod.DeletionTimestamp != nil {
		s.queue.Delete(pod)
		s.nominees.forget(pod)
		return
	}
	p := s.withPriority(pod)
	s.nominees.onPending(p)
	s.queue.Update(p)
}

func (s *Scheduler) onPodDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	if pod.Spec.NodeName != "" {
		s.cache.RemovePod(pod)
		s.queue.MoveAllToActiveOrBackoff(nil)
		return
	}
	s.queue.Delete(pod)
	s.nominees.forget(pod)
	// An assumed pod deleted before its binding was seen frees its node.
	if s.cache.IsAssumed(pod.UID) {
		s.cache.ForgetPod(pod)
		s.queue.MoveAllToActiveOrBackoff(nil)
	}
}

func (s *Scheduler) onNodeAdd(obj any) {
	node, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	s.cache.AddNode(node)
	s.queue.MoveAllToActiveOrBackoff(nil)
}

func (s *Scheduler) onNodeUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*v1.Node)
	node, ok2 := newObj.(*v1.Node)
	if !ok1 || !ok2 {
		return
	}
	s.cache.UpdateNode(node)
	if nodeSchedulingChanged(old, node) {
		s.queue.MoveAllToActiveOrBackoff(nil)
	}
}

func (s *Scheduler) onNodeDelete(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if node, ok := obj.(*v1.Node); ok {
		s.cache.RemoveNode(node.Name)
	}
}

// nodeSchedulingChanged ignores heartbeats: only changes that can make a
// pod fit count.
func nodeSchedulingChanged(old, node *v1.Node) bool {
	if old.Spec.Unschedulable != node.Spec.Unschedulable ||
		!reflect.DeepEqual(old.Labels, node.Labels) ||
		!reflect.DeepEqual(old.Spec.Taints, node.Spec.Taints) ||
		!reflect.DeepEqual(old.Status.Allocatable, node.Status.Allocatable) ||
		!reflect.DeepEqual(old.Status.Images, node.Status.Images) {
		return true
	}
	cond := func(n *v1.Node, t v1.NodeConditionType) v1.ConditionStatus {
		for _, c := range n.Status.Conditions {
			if c.Type == t {
				return c.Status
			}
		}
		return ""
	}
	for _, t := range []v1.NodeConditionType{v1.NodeReady, v1.NodeNetworkUnavailable} {
		if cond(old, t) != cond(node, t) {
			return true
		}
	}
	return false
}

// affinityPlugins are the plugins a newly placed pod can satisfy.
var affinityPlugins = []string{plugins.InterPodAffinityName, plugins.PodTopologySpreadName}

// failedOn matches queued pods rejected by any of the named plugins.
func failedOn(names []string) func(*queue.QueuedPod) bool {
	return func(qp *queue.QueuedPod) bool {
		for _, n := range names {
			if _, ok := qp.UnschedulablePlugins[n]; ok {
				return true
			}
		}
		return false
	}
}
