// Package apps describes the apps/v1 API group's resources (deployments,
// replicasets, daemonsets, statefulsets, controllerrevisions) and their
// strategies: upstream's defaults, validation, field-selector fields and
// kubectl table columns.
package apps

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/podspec"
)

// Resources returns the apps/v1 resources the API server serves.
func Resources() []*registry.Resource {
	gvk := appsv1.SchemeGroupVersion.WithKind
	return []*registry.Resource{
		{
			GVK: gvk("Deployment"), Plural: "deployments", Singular: "deployment", ShortNames: []string{"deploy"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:     func() runtime.Object { return &appsv1.Deployment{} },
			NewList: func() runtime.Object { return &appsv1.DeploymentList{} },
			Scale: &registry.Scale{
				Get: func(obj runtime.Object) (int32, int32, string) {
					d := obj.(*appsv1.Deployment)
					return replicas(d.Spec.Replicas), d.Status.Replicas, selectorString(d.Spec.Selector)
				},
				Set: func(obj runtime.Object, n int32) { obj.(*appsv1.Deployment).Spec.Replicas = &n },
			},
			Strategy: deploymentStrategy{},
		},
		{
			GVK: gvk("ReplicaSet"), Plural: "replicasets", Singular: "replicaset", ShortNames: []string{"rs"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:     func() runtime.Object { return &appsv1.ReplicaSet{} },
			NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
			Scale: &registry.Scale{
				Get: func(obj runtime.Object) (int32, int32, string) {
					rs := obj.(*appsv1.ReplicaSet)
					return replicas(rs.Spec.Replicas), rs.Status.Replicas, selectorString(rs.Spec.Selector)
				},
				Set: func(obj runtime.Object, n int32) { obj.(*appsv1.ReplicaSet).Spec.Replicas = &n },
			},
			Strategy: replicaSetStrategy{},
		},
		{
			GVK: gvk("DaemonSet"), Plural: "daemonsets", Singular: "daemonset", ShortNames: []string{"ds"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:      func() runtime.Object { return &appsv1.DaemonSet{} },
			NewList:  func() runtime.Object { return &appsv1.DaemonSetList{} },
			Strategy: daemonSetStrategy{},
		},
		{
			GVK: gvk("StatefulSet"), Plural: "statefulsets", Singular: "statefulset", ShortNames: []string{"sts"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:     func() runtime.Object { return &appsv1.StatefulSet{} },
			NewList: func() runtime.Object { return &appsv1.StatefulSetList{} },
			Scale: &registry.Scale{
				Get: func(obj runtime.Object) (int32, int32, string) {
					s := obj.(*appsv1.StatefulSet)
					return replicas(s.Spec.Replicas), s.Status.Replicas, selectorString(s.Spec.Selector)
				},
				Set: func(obj runtime.Object, n int32) { obj.(*appsv1.StatefulSet).Spec.Replicas = &n },
			},
			Strategy: statefulSetStrategy{},
		},
		{
			GVK: gvk("ControllerRevision"), Plural: "controllerrevisions", Singular: "controllerrevision",
			Namespaced: true,
			New:        func() runtime.Object { return &appsv1.ControllerRevision{} },
			NewList:    func() runtime.Object { return &appsv1.ControllerRevisionList{} },
			Strategy:   controllerRevisionStrategy{},
		},
	}
}

// replicas dereferences spec.replicas, which defaults to 1.
func replicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// selectorString renders a label selector as autoscaling/v1 Scale's
// status.selector and kubectl's wide Deployment SELECTOR column do.
func selectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return "<invalid>"
	}
	return s.String()
}

func ptr[T any](v T) *T { return &v }

// col builds a table column definition.
func col(name, typ, desc string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc, Priority: priority}
}

func containerColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		col("Containers", "string", "Names of each container in the template.", 1),
		col("Images", "string", "Images referenced by each container in the template.", 1),
	}
}

// validateSelector checks a workload's required, non-empty label selector
// and returns it parsed (nil when it does not parse, reported with
// parseMsg).
func validateSelector(sel *metav1.LabelSelector, kind, parseMsg string, path *field.Path) (labels.Selector, field.ErrorList) {
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(path, ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, path)...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(path, sel, "empty selector is invalid for "+kind))
		}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		errs = append(errs, field.Invalid(path, sel, parseMsg))
		return nil, errs
	}
	return s, errs
}

// validateTemplate checks the pod template of a workload whose pods always
// restart: labels matching the selector, the pod spec, restartPolicy
// Always and no activeDeadlineSeconds.
func validateTemplate(t *corev1.PodTemplateSpec, sel labels.Selector, kind string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if sel != nil && !sel.Empty() && !sel.Matches(labels.Set(t.Labels)) {
		errs = append(errs, field.Invalid(path.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, podspec.ValidateTemplate(t, path)...)
	errs = append(errs, validateAlwaysRestart(&t.Spec, kind, path.Child("spec"))...)
	return errs
}

func validateAlwaysRestart(spec *corev1.PodSpec, kind string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	// An empty restartPolicy was already reported by the pod spec checks.
	if spec.RestartPolicy != corev1.RestartPolicyAlways && spec.RestartPolicy != "" {
		errs = append(errs, field.NotSupported(path.Child("restartPolicy"), spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(path.Child("activeDeadlineSeconds"), "activeDeadlineSeconds in "+kind+" is not Supported"))
	}
	return errs
}

func nonNegative(v int64, path *field.Path) field.ErrorList {
	return apimachineryvalidation.ValidateNonnegativeField(v, path)
}

func nonNegativePtr(v *int32, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	return nonNegative(int64(*v), path)
}

// validatePositiveIntOrPercent checks an int-or-percent that must be >= 0.
func validatePositiveIntOrPercent(v intstr.IntOrString, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch v.Type {
	case intstr.String:
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(path, v, msg))
		}
	case intstr.Int:
		errs = append(errs, nonNegative(int64(v.IntValue()), path)...)
	default:
		errs = append(errs, field.Invalid(path, v, "must be an integer or percentage (e.g '5%%')"))
	}
	return errs
}

// percent returns the value of a valid percentage string.
func percent(v intstr.IntOrString) (int, bool) {
	if v.Type != intstr.String || len(validation.IsValidPercent(v.StrVal)) != 0 {
		return 0, false
	}
	n, _ := strconv.Atoi(v.StrVal[:len(v.StrVal)-1])
	return n, true
}

func intOrPercentValue(v intstr.IntOrString) int {
	if n, ok := percent(v); ok {
		return n
	}
	return v.IntValue()
}

func notMoreThan100Percent(v intstr.IntOrString, path *field.Path) field.ErrorList {
	if n, ok := percent(v); ok && n > 100 {
		return field.ErrorList{field.Invalid(path, v, "must not be greater than 100%")}
	}
	return nil
}

func decremented(cur, old *int32) bool {
	if cur == nil && old != nil {
		return true
	}
	return cur != nil && old != nil && *cur < *old
}

func validateCollisionCount(cur, old *int32, path *field.Path) field.ErrorList {
	if !decremented(cur, old) {
		return nil
	}
	var v int32
	if cur != nil {
		v = *cur
	}
	return field.ErrorList{field.Invalid(path, v, "cannot be decremented")}
}
