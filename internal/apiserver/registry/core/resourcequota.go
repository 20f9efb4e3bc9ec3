package core

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

var standardQuotaScopes = map[corev1.ResourceQuotaScope]bool{
	corev1.ResourceQuotaScopeTerminating: true, corev1.ResourceQuotaScopeNotTerminating: true,
	corev1.ResourceQuotaScopeBestEffort: true, corev1.ResourceQuotaScopeNotBestEffort: true,
	corev1.ResourceQuotaScopePriorityClass: true, corev1.ResourceQuotaScopeCrossNamespacePodAffinity: true,
	corev1.ResourceQuotaScopeVolumeAttributesClass: true,
}

// resourceQuotaStrategy implements resource quotas; the quota controller
// owns the status.
type resourceQuotaStrategy struct{ registry.Base }

// PrepareForCreate clears the status.
func (resourceQuotaStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*corev1.ResourceQuota).Status = corev1.ResourceQuotaStatus{}
}

// ValidateCreate checks the hard limits and scopes.
func (resourceQuotaStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	q := obj.(*corev1.ResourceQuota)
	errs := validateQuotaList(q.Spec.Hard, field.NewPath("spec", "hard"))
	errs = append(errs, validateQuotaScopes(&q.Spec, field.NewPath("spec"))...)
	return append(errs, validateQuotaStatus(&q.Status)...)
}

// ValidateUpdate also keeps the scopes immutable.
func (resourceQuotaStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	q, oldQ := obj.(*corev1.ResourceQuota), old.(*corev1.ResourceQuota)
	errs := validateQuotaList(q.Spec.Hard, field.NewPath("spec", "hard"))
	errs = append(errs, validateQuotaScopes(&q.Spec, field.NewPath("spec"))...)
	oldScopes := map[corev1.ResourceQuotaScope]bool{}
	for _, s := range oldQ.Spec.Scopes {
		oldScopes[s] = true
	}
	newScopes := map[corev1.ResourceQuotaScope]bool{}
	for _, s := range q.Spec.Scopes {
		newScopes[s] = true
	}
	same := len(oldScopes) == len(newScopes)
	for s := range newScopes {
		same = same && oldScopes[s]
	}
	if !same {
		errs = append(errs, field.Invalid(field.NewPath("spec", "scopes"), q.Spec.Scopes, "field is immutable"))
	}
	return errs
}

// ValidateStatusUpdate checks status.hard and status.used.
func (resourceQuotaStrategy) ValidateStatusUpdate(obj, _ runtime.Object) field.ErrorList {
	return validateQuotaStatus(&obj.(*corev1.ResourceQuota).Status)
}

func validateQuotaStatus(st *corev1.ResourceQuotaStatus) field.ErrorList {
	errs := validateQuotaList(st.Hard, field.NewPath("status", "hard"))
	return append(errs, validateQuotaList(st.Used, field.NewPath("status", "used"))...)
}

func validateQuotaList(list corev1.ResourceList, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedResourceNames(list) {
		p := fldPath.Key(string(name))
		errs = append(errs, validateQuotaResourceName(name, p)...)
		errs = append(errs, validateResourceQuantityValue(name, list[name], p)...)
	}
	return errs
}

func validateQuotaScopes(spec *corev1.ResourceQuotaSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	conflicts := func(set map[corev1.ResourceQuotaScope]bool) bool {
		return (set[corev1.ResourceQuotaScopeBestEffort] && set[corev1.ResourceQuotaScopeNotBestEffort]) ||
			(set[corev1.ResourceQuotaScopeTerminating] && set[corev1.ResourceQuotaScopeNotTerminating])
	}
	scopesPath := fldPath.Child("scopes")
	set := map[corev1.ResourceQuotaScope]bool{}
	for _, s := range spec.Scopes {
		if !standardQuotaScopes[s] {
			errs = append(errs, field.Invalid(scopesPath, spec.Scopes, "unsupported scope"))
		}
		set[s] = true
	}
	if conflicts(set) {
		errs = append(errs, field.Invalid(scopesPath, spec.Scopes, "conflicting scopes"))
	}
	if spec.ScopeSelector == nil {
		return errs
	}
	mePath := fldPath.Child("scopeSelector").Child("matchExpressions")
	set = map[corev1.ResourceQuotaScope]bool{}
	for _, req := range spec.ScopeSelector.MatchExpressions {
		if !standardQuotaScopes[req.ScopeName] {
			errs = append(errs, field.Invalid(mePath.Child("scopeName"), req.ScopeName, "unsupported scope"))
		}
		switch req.ScopeName {
		case corev1.ResourceQuotaScopeBestEffort, corev1.ResourceQuotaScopeNotBestEffort, corev1.ResourceQuotaScopeTerminating,
			corev1.ResourceQuotaScopeNotTerminating, corev1.ResourceQuotaScopeCrossNamespacePodAffinity:
			if req.Operator != corev1.ScopeSelectorOpExists {
				errs = append(errs, field.Invalid(mePath.Child("operator"), req.Operator,
					"must be 'Exists' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity"))
			}
		}
		switch req.Operator {
		case corev1.ScopeSelectorOpIn, corev1.ScopeSelectorOpNotIn:
			if len(req.Values) == 0 {
				errs = append(errs, field.Required(mePath.Child("values"), "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"))
			}
		case corev1.ScopeSelectorOpExists, corev1.ScopeSelectorOpDoesNotExist:
			if len(req.Values) != 0 {
				errs = append(errs, field.Invalid(mePath.Child("values"), req.Values, "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"))
			}
		default:
			errs = append(errs, field.Invalid(mePath.Child("operator"), req.Operator, "not a valid selector operator"))
		}
		set[req.ScopeName] = true
	}
	if conflicts(set) {
		errs = append(errs, field.Invalid(mePath, spec.Scopes, "conflicting scopes"))
	}
	return errs
}

// Columns returns NAME, REQUEST, LIMIT, AGE (upstream moved AGE last in
// Kubernetes 1.33).
func (resourceQuotaStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Request", Type: "string", Description: "Request represents a minimum amount of cpu/memory that a container may consume."},
		{Name: "Limit", Type: "string", Description: "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."},
		registry.AgeColumn(),
	}
}

// Row lists "name: used/hard" pairs, limits.* in LIMIT and the rest in
// REQUEST.
func (resourceQuotaStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	q := obj.(*corev1.ResourceQuota)
	var requests, limits []string
	for _, name := range sortedResourceNames(q.Status.Hard) {
		used, hard := q.Status.Used[name], q.Status.Hard[name]
		entry := fmt.Sprintf("%s: %s/%s", name, used.String(), hard.String())
		if prefix, _, ok := strings.Cut(string(name), "."); ok && prefix == "limits" {
			limits = append(limits, entry)
		} else {
			requests = append(requests, entry)
		}
	}
	return []interface{}{q.Name, strings.Join(requests, ", "), strings.Join(limits, ", "), registry.Age(q.CreationTimestamp, now)}
}
