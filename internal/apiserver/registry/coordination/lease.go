// Package coordination describes the coordination.k8s.io/v1 API group's
// resources (leases) and their strategy: validation and kubectl columns.
package coordination

import (
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Resources returns the coordination.k8s.io/v1 resources the API server
// serves.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GVK:    coordinationv1.SchemeGroupVersion.WithKind("Lease"),
		Plural: "leases", Singular: "lease", Namespaced: true,
		New:      func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:  func() runtime.Object { return &coordinationv1.LeaseList{} },
		Strategy: leaseStrategy{},
	}}
}

type leaseStrategy struct{ registry.Base }

// ValidateCreate checks the spec.
func (leaseStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateLeaseSpec(&obj.(*coordinationv1.Lease).Spec, field.NewPath("spec"))
}

// ValidateUpdate checks the spec.
func (leaseStrategy) ValidateUpdate(obj, _ runtime.Object) field.ErrorList {
	return validateLeaseSpec(&obj.(*coordinationv1.Lease).Spec, field.NewPath("spec"))
}

// strategies are the Kubernetes-defined coordinated lease strategies.
var strategies = []coordinationv1.CoordinatedLeaseStrategy{coordinationv1.OldestEmulationVersion}

func validateLeaseSpec(s *coordinationv1.LeaseSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.LeaseDurationSeconds != nil && *s.LeaseDurationSeconds <= 0 {
		errs = append(errs, field.Invalid(path.Child("leaseDurationSeconds"), s.LeaseDurationSeconds, "must be greater than 0"))
	}
	if s.LeaseTransitions != nil && *s.LeaseTransitions < 0 {
		errs = append(errs, field.Invalid(path.Child("leaseTransitions"), s.LeaseTransitions, "must be greater than or equal to 0"))
	}
	if s.Strategy != nil {
		// Upstream nests the child twice: spec.strategy.strategy.
		sp := path.Child("strategy").Child("strategy")
		if !strings.Contains(string(*s.Strategy), "/") {
			known := false
			for _, k := range strategies {
				known = known || k == *s.Strategy
			}
			if !known {
				errs = append(errs, field.NotSupported(sp, *s.Strategy, strategies))
			}
		} else {
			for _, msg := range validation.IsQualifiedName(string(*s.Strategy)) {
				errs = append(errs, field.Invalid(sp, *s.Strategy, msg))
			}
		}
	}
	if s.PreferredHolder != nil && *s.PreferredHolder != "" && (s.Strategy == nil || *s.Strategy == "") {
		errs = append(errs, field.Forbidden(path.Child("preferredHolder"), "may only be specified if `strategy` is defined"))
	}
	return errs
}

// Columns are kubectl's lease columns.
func (leaseStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Holder", Type: "string", Description: coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]},
		registry.AgeColumn(),
	}
}

// Row prints one lease.
func (leaseStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	l := obj.(*coordinationv1.Lease)
	var holder string
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	return []interface{}{l.Name, holder, registry.Age(l.CreationTimestamp, now)}
}
