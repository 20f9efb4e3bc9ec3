package apps

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/podspec"
)

type deploymentStrategy struct{ registry.Base }

// Default applies upstream's apps/v1 Deployment defaults and the pod
// template defaults.
func (deploymentStrategy) Default(obj runtime.Object) {
	d := obj.(*appsv1.Deployment)
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = ptr(int32(1))
	}
	s := &d.Spec.Strategy
	if s.Type == "" {
		s.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.RollingUpdate == nil {
			s.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if s.RollingUpdate.MaxUnavailable == nil {
			s.RollingUpdate.MaxUnavailable = ptr(intstr.FromString("25%"))
		}
		if s.RollingUpdate.MaxSurge == nil {
			s.RollingUpdate.MaxSurge = ptr(intstr.FromString("25%"))
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = ptr(int32(10))
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = ptr(int32(600))
	}
	podspec.DefaultTemplate(&d.Spec.Template)
}

// PrepareForCreate clears the status.
func (deploymentStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*appsv1.Deployment).Status = appsv1.DeploymentStatus{}
}

// ValidateCreate checks the spec.
func (deploymentStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateDeploymentSpec(&obj.(*appsv1.Deployment).Spec, field.NewPath("spec"))
}

// ValidateUpdate checks the spec and that the selector did not change.
func (deploymentStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	d, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	errs := validateDeploymentSpec(&d.Spec, field.NewPath("spec"))
	return append(errs, apimachineryvalidation.ValidateImmutableField(d.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))...)
}

// ValidateStatusUpdate checks the status counters.
func (deploymentStrategy) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	d, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
	path := field.NewPath("status")
	st := &d.Status
	errs := nonNegative(st.ObservedGeneration, path.Child("observedGeneration"))
	errs = append(errs, nonNegative(int64(st.Replicas), path.Child("replicas"))...)
	errs = append(errs, nonNegative(int64(st.UpdatedReplicas), path.Child("updatedReplicas"))...)
	errs = append(errs, nonNegative(int64(st.ReadyReplicas), path.Child("readyReplicas"))...)
	errs = append(errs, nonNegative(int64(st.AvailableReplicas), path.Child("availableReplicas"))...)
	errs = append(errs, nonNegative(int64(st.UnavailableReplicas), path.Child("unavailableReplicas"))...)
	errs = append(errs, nonNegativePtr(st.TerminatingReplicas, path.Child("terminatingReplicas"))...)
	errs = append(errs, nonNegativePtr(st.CollisionCount, path.Child("collisionCount"))...)
	const msg = "cannot be greater than status.replicas"
	if st.UpdatedReplicas > st.Replicas {
		errs = append(errs, field.Invalid(path.Child("updatedReplicas"), st.UpdatedReplicas, msg))
	}
	if st.ReadyReplicas > st.Replicas {
		errs = append(errs, field.Invalid(path.Child("readyReplicas"), st.ReadyReplicas, msg))
	}
	if st.AvailableReplicas > st.Replicas {
		errs = append(errs, field.Invalid(path.Child("availableReplicas"), st.AvailableReplicas, msg))
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		errs = append(errs, field.Invalid(path.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than readyReplicas"))
	}
	return append(errs, validateCollisionCount(st.CollisionCount, o.Status.CollisionCount, path.Child("collisionCount"))...)
}

func validateDeploymentSpec(spec *appsv1.DeploymentSpec, path *field.Path) field.ErrorList {
	errs := nonNegative(int64(replicas(spec.Replicas)), path.Child("replicas"))
	sel, selErrs := validateSelector(spec.Selector, "deployment", "invalid label selector", path.Child("selector"))
	errs = append(errs, selErrs...)
	if sel != nil {
		errs = append(errs, validateTemplate(&spec.Template, sel, "ReplicaSet", path.Child("template"))...)
	}
	errs = append(errs, validateDeploymentStrategy(&spec.Strategy, path.Child("strategy"))...)
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), path.Child("minReadySeconds"))...)
	errs = append(errs, nonNegativePtr(spec.RevisionHistoryLimit, path.Child("revisionHistoryLimit"))...)
	if p := spec.ProgressDeadlineSeconds; p != nil {
		errs = append(errs, nonNegative(int64(*p), path.Child("progressDeadlineSeconds"))...)
		if *p <= spec.MinReadySeconds {
			errs = append(errs, field.Invalid(path.Child("progressDeadlineSeconds"), *p, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

func validateDeploymentStrategy(s *appsv1.DeploymentStrategy, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(path.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		ru := s.RollingUpdate
		if ru == nil {
			return append(errs, field.Required(path.Child("rollingUpdate"), "this should be defaulted and never be nil"))
		}
		p := path.Child("rollingUpdate")
		var unavailable, surge intstr.IntOrString
		if ru.MaxUnavailable != nil {
			unavailable = *ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			surge = *ru.MaxSurge
		}
		errs = append(errs, validatePositiveIntOrPercent(unavailable, p.Child("maxUnavailable"))...)
		errs = append(errs, validatePositiveIntOrPercent(surge, p.Child("maxSurge"))...)
		if intOrPercentValue(unavailable) == 0 && intOrPercentValue(surge) == 0 {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), unavailable, "may not be 0 when `maxSurge` is 0"))
		}
		errs = append(errs, notMoreThan100Percent(unavailable, p.Child("maxUnavailable"))...)
	default:
		errs = append(errs, field.NotSupported(path, s, []string{
			string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	return errs
}

// Columns are kubectl's deployment columns.
func (deploymentStrategy) Columns() []metav1.TableColumnDefinition {
	return append([]metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Ready", "string", "Number of the pod with ready state", 0),
		col("Up-to-date", "string", appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"], 0),
		col("Available", "string", appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"], 0),
		registry.AgeColumn(),
	}, append(containerColumns(), col("Selector", "string", appsv1.DeploymentSpec{}.SwaggerDoc()["selector"], 1))...)
}

// Row prints one deployment.
func (deploymentStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	d := obj.(*appsv1.Deployment)
	names, images := podspec.ContainerCells(&d.Spec.Template.Spec)
	return []interface{}{
		d.Name,
		fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
		int64(d.Status.UpdatedReplicas),
		int64(d.Status.AvailableReplicas),
		registry.Age(d.CreationTimestamp, now),
		names, images, selectorString(d.Spec.Selector),
	}
}
