package apiserver

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	podsGR            = schema.GroupResource{Resource: "pods"}
	priorityClassesGR = schema.GroupResource{Group: "scheduling.k8s.io", Resource: "priorityclasses"}
)

// admitPodPriority resolves a new pod's priority from its PriorityClass,
// as upstream's Priority admission plugin does: spec.priority and
// spec.preemptionPolicy come from the class named by priorityClassName, or
// from the global default class when none is named (priority 0 when there
// is none). A class that does not exist, or a priority or policy in the
// pod that differs from its class, is refused with 403 Forbidden.
func (s *Server) admitPodPriority(ctx context.Context, obj runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return nil
	}
	h := s.byGR[priorityClassesGR]
	var pc *schedulingv1.PriorityClass
	if h == nil {
		// no PriorityClasses served: every pod has priority 0
	} else if name := pod.Spec.PriorityClassName; name != "" {
		obj, _, found := h.cache.get(h.key("", name))
		if !found {
			// the cache may lag a class created a moment ago
			kv, err := s.store.Get(ctx, h.key("", name))
			if err != nil {
				return apierrors.NewForbidden(podsGR, pod.Name, fmt.Errorf("no PriorityClass with name %s was found", name))
			}
			if obj, err = h.fromStore(kv); err != nil {
				return apierrors.NewInternalError(err)
			}
		}
		pc, _ = obj.(*schedulingv1.PriorityClass)
	} else {
		classes, _ := h.cache.snapshot(h.key("", ""), nil)
		for _, o := range classes {
			c, ok := o.(*schedulingv1.PriorityClass)
			// upstream picks the lowest-valued default if several claim it
			if ok && c.GlobalDefault && (pc == nil || c.Value < pc.Value) {
				pc = c
			}
		}
	}
	priority := int32(0)
	policy := corev1.PreemptLowerPriority
	if pc != nil {
		priority = pc.Value
		if pc.PreemptionPolicy != nil {
			policy = *pc.PreemptionPolicy
		}
		pod.Spec.PriorityClassName = pc.Name
	}
	if pod.Spec.Priority != nil && *pod.Spec.Priority != priority {
		return apierrors.NewForbidden(podsGR, pod.Name, fmt.Errorf(
			"the integer value of priority (%d) must not be provided in pod spec; priority admission controller computed %d from the given PriorityClass name",
			*pod.Spec.Priority, priority))
	}
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy != policy {
		return apierrors.NewForbidden(podsGR, pod.Name, fmt.Errorf(
			"the string value of PreemptionPolicy (%s) must not be provided in pod spec; priority admission controller computed %s from the given PriorityClass name",
			*pod.Spec.PreemptionPolicy, policy))
	}
	pod.Spec.Priority = &priority
	pod.Spec.PreemptionPolicy = &policy
	return nil
}
