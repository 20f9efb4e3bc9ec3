// Package policy describes the policy/v1 API group's resources
// (poddisruptionbudgets) and their strategy: validation and kubectl
// columns.
package policy

import (
	"strconv"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Resources returns the policy/v1 resources the API server serves.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GVK:    policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"),
		Plural: "poddisruptionbudgets", Singular: "poddisruptionbudget", ShortNames: []string{"pdb"},
		Namespaced: true, Status: true,
		New:      func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		NewList:  func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		Strategy: pdbStrategy{},
	}}
}

var evictionPolicies = []string{string(policyv1.AlwaysAllow), string(policyv1.IfHealthyBudget)}

type pdbStrategy struct{ registry.Base }

// PrepareForCreate clears the status.
func (pdbStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*policyv1.PodDisruptionBudget).Status = policyv1.PodDisruptionBudgetStatus{}
}

// ValidateCreate checks the spec.
func (pdbStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateSpec(&obj.(*policyv1.PodDisruptionBudget).Spec, false, field.NewPath("spec"))
}

// ValidateUpdate checks the spec, tolerating invalid selector label
// values the old object had.
func (pdbStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	o := old.(*policyv1.PodDisruptionBudget)
	return validateSpec(&obj.(*policyv1.PodDisruptionBudget).Spec, metav1validation.LabelSelectorHasInvalidLabelValue(o.Spec.Selector), field.NewPath("spec"))
}

// ValidateStatusUpdate checks the conditions and counters.
func (pdbStrategy) ValidateStatusUpdate(obj, _ runtime.Object) field.ErrorList {
	st := &obj.(*policyv1.PodDisruptionBudget).Status
	p := field.NewPath("status")
	errs := metav1validation.ValidateConditions(st.Conditions, p.Child("conditions"))
	for _, c := range []struct {
		v    int32
		name string
	}{{st.DisruptionsAllowed, "disruptionsAllowed"}, {st.CurrentHealthy, "currentHealthy"}, {st.DesiredHealthy, "desiredHealthy"}, {st.ExpectedPods, "expectedPods"}} {
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(c.v), p.Child(c.name))...)
	}
	return errs
}

func validateSpec(s *policyv1.PodDisruptionBudgetSpec, allowInvalidLabelValue bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.MinAvailable != nil && s.MaxUnavailable != nil {
		errs = append(errs, field.Invalid(p, s, "minAvailable and maxUnavailable cannot be both set"))
	}
	if s.MinAvailable != nil {
		errs = append(errs, validateIntOrPercent(*s.MinAvailable, p.Child("minAvailable"))...)
	}
	if s.MaxUnavailable != nil {
		errs = append(errs, validateIntOrPercent(*s.MaxUnavailable, p.Child("maxUnavailable"))...)
	}
	opts := metav1validation.LabelSelectorValidationOptions{AllowInvalidLabelValueInSelector: allowInvalidLabelValue}
	errs = append(errs, metav1validation.ValidateLabelSelector(s.Selector, opts, p.Child("selector"))...)
	if e := s.UnhealthyPodEvictionPolicy; e != nil && *e != policyv1.AlwaysAllow && *e != policyv1.IfHealthyBudget {
		errs = append(errs, field.NotSupported(p.Child("unhealthyPodEvictionPolicy"), *e, evictionPolicies))
	}
	return errs
}

// validateIntOrPercent checks a non-negative count or a percentage of at
// most 100%.
func validateIntOrPercent(v intstr.IntOrString, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch v.Type {
	case intstr.String:
		msgs := validation.IsValidPercent(v.StrVal)
		for _, msg := range msgs {
			errs = append(errs, field.Invalid(p, v, msg))
		}
		if len(msgs) == 0 {
			if n, _ := strconv.Atoi(v.StrVal[:len(v.StrVal)-1]); n > 100 {
				errs = append(errs, field.Invalid(p, v, "must not be greater than 100%"))
			}
		}
	case intstr.Int:
		errs = append(errs, apimachineryvalidation.ValidateNonnegativeField(int64(v.IntValue()), p)...)
	default:
		errs = append(errs, field.Invalid(p, v, "must be an integer or percentage (e.g '5%%')"))
	}
	return errs
}

// Columns are kubectl's poddisruptionbudget columns.
func (pdbStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Min Available", Type: "string", Description: "The minimum number of pods that must be available."},
		{Name: "Max Unavailable", Type: "string", Description: "The maximum number of pods that may be unavailable."},
		{Name: "Allowed Disruptions", Type: "integer", Description: "Calculated number of pods that may be disrupted at this time."},
		registry.AgeColumn(),
	}
}

// Row prints one poddisruptionbudget ("N/A" for unset bounds).
func (pdbStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	pdb := obj.(*policyv1.PodDisruptionBudget)
	minAvail, maxUnavail := "N/A", "N/A"
	if pdb.Spec.MinAvailable != nil {
		minAvail = pdb.Spec.MinAvailable.String()
	}
	if pdb.Spec.MaxUnavailable != nil {
		maxUnavail = pdb.Spec.MaxUnavailable.String()
	}
	return []interface{}{pdb.Name, minAvail, maxUnavail, int64(pdb.Status.DisruptionsAllowed), registry.Age(pdb.CreationTimestamp, now)}
}
