package apps

import (
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/podspec"
)

type replicaSetStrategy struct{ registry.Base }

// Default sets replicas to 1 and applies the pod template defaults.
func (replicaSetStrategy) Default(obj runtime.Object) {
	rs := obj.(*appsv1.ReplicaSet)
	if rs.Spec.Replicas == nil {
		rs.Spec.Replicas = ptr(int32(1))
	}
	podspec.DefaultTemplate(&rs.Spec.Template)
}

// PrepareForCreate clears the status.
func (replicaSetStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*appsv1.ReplicaSet).Status = appsv1.ReplicaSetStatus{}
}

// ValidateCreate checks the spec.
func (replicaSetStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateReplicaSetSpec(&obj.(*appsv1.ReplicaSet).Spec, field.NewPath("spec"))
}

// ValidateUpdate checks the spec and that the selector did not change.
func (replicaSetStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	rs, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
	errs := validateReplicaSetSpec(&rs.Spec, field.NewPath("spec"))
	return append(errs, apimachineryvalidation.ValidateImmutableField(rs.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))...)
}

// ValidateStatusUpdate checks the status counters.
func (replicaSetStrategy) ValidateStatusUpdate(obj, _ runtime.Object) field.ErrorList {
	st := &obj.(*appsv1.ReplicaSet).Status
	path := field.NewPath("status")
	errs := nonNegative(int64(st.Replicas), path.Child("replicas"))
	errs = append(errs, nonNegative(int64(st.FullyLabeledReplicas), path.Child("fullyLabeledReplicas"))...)
	errs = append(errs, nonNegative(int64(st.ReadyReplicas), path.Child("readyReplicas"))...)
	errs = append(errs, nonNegative(int64(st.AvailableReplicas), path.Child("availableReplicas"))...)
	errs = append(errs, nonNegative(st.ObservedGeneration, path.Child("observedGeneration"))...)
	errs = append(errs, nonNegativePtr(st.TerminatingReplicas, path.Child("terminatingReplicas"))...)
	const msg = "cannot be greater than status.replicas"
	if st.FullyLabeledReplicas > st.Replicas {
		errs = append(errs, field.Invalid(path.Child("fullyLabeledReplicas"), st.FullyLabeledReplicas, msg))
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
	return errs
}

func validateReplicaSetSpec(spec *appsv1.ReplicaSetSpec, path *field.Path) field.ErrorList {
	errs := nonNegative(int64(replicas(spec.Replicas)), path.Child("replicas"))
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), path.Child("minReadySeconds"))...)
	// Upstream says "deployment" here too.
	sel, selErrs := validateSelector(spec.Selector, "deployment", "invalid label selector", path.Child("selector"))
	errs = append(errs, selErrs...)
	if sel != nil {
		errs = append(errs, validateTemplate(&spec.Template, sel, "ReplicaSet", path.Child("template"))...)
	}
	return errs
}

// Fields adds status.replicas, as upstream does.
func (replicaSetStrategy) Fields(obj runtime.Object) fields.Set {
	return fields.Set{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
}

// Columns are kubectl's replicaset columns.
func (replicaSetStrategy) Columns() []metav1.TableColumnDefinition {
	return append([]metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Desired", "integer", appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"], 0),
		col("Current", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"], 0),
		col("Ready", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"], 0),
		registry.AgeColumn(),
	}, append(containerColumns(), col("Selector", "string", appsv1.ReplicaSetSpec{}.SwaggerDoc()["selector"], 1))...)
}

// Row prints one replicaset.
func (replicaSetStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	rs := obj.(*appsv1.ReplicaSet)
	names, images := podspec.ContainerCells(&rs.Spec.Template.Spec)
	return []interface{}{
		rs.Name,
		int64(replicas(rs.Spec.Replicas)),
		int64(rs.Status.Replicas),
		int64(rs.Status.ReadyReplicas),
		registry.Age(rs.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(rs.Spec.Selector),
	}
}
