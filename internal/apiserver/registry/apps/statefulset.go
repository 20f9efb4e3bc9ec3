package apps

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/podspec"
)

type statefulSetStrategy struct{ registry.Base }

// Default applies upstream's StatefulSet defaults (OrderedReady, rolling
// updates from partition 0, Retain/Retain claim retention, one replica,
// revisionHistoryLimit 10) and the pod and claim template defaults.
func (statefulSetStrategy) Default(obj runtime.Object) {
	s := obj.(*appsv1.StatefulSet)
	spec := &s.Spec
	if spec.PodManagementPolicy == "" {
		spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if spec.UpdateStrategy.Type == "" {
		spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		if spec.UpdateStrategy.RollingUpdate == nil {
			spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
	}
	if ru := spec.UpdateStrategy.RollingUpdate; spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && ru != nil && ru.Partition == nil {
		ru.Partition = ptr(int32(0))
	}
	if spec.PersistentVolumeClaimRetentionPolicy == nil {
		spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted == "" {
		p.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p.WhenScaled == "" {
		p.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if spec.Replicas == nil {
		spec.Replicas = ptr(int32(1))
	}
	if spec.RevisionHistoryLimit == nil {
		spec.RevisionHistoryLimit = ptr(int32(10))
	}
	podspec.DefaultTemplate(&spec.Template)
	for i := range spec.VolumeClaimTemplates {
		podspec.DefaultClaimTemplate(&spec.VolumeClaimTemplates[i])
	}
}

// PrepareForCreate clears the status.
func (statefulSetStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*appsv1.StatefulSet).Status = appsv1.StatefulSetStatus{}
}

// ValidateCreate checks the spec.
func (statefulSetStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateStatefulSetSpec(&obj.(*appsv1.StatefulSet).Spec, field.NewPath("spec"), false)
}

// ValidateUpdate checks the spec, that only the mutable fields changed and
// that the selector did not.
func (statefulSetStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	s, o := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
	errs := validateStatefulSetSpec(&s.Spec, field.NewPath("spec"), true)
	clone := s.Spec.DeepCopy()
	clone.Replicas = o.Spec.Replicas
	clone.Template = o.Spec.Template
	clone.UpdateStrategy = o.Spec.UpdateStrategy
	clone.MinReadySeconds = o.Spec.MinReadySeconds
	clone.Ordinals = o.Spec.Ordinals
	clone.RevisionHistoryLimit = o.Spec.RevisionHistoryLimit
	clone.PersistentVolumeClaimRetentionPolicy = o.Spec.PersistentVolumeClaimRetentionPolicy
	if !equality.Semantic.DeepEqual(*clone, o.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
	}
	return errs
}

// ValidateStatusUpdate checks the status counters.
func (statefulSetStrategy) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	st, o := &obj.(*appsv1.StatefulSet).Status, &old.(*appsv1.StatefulSet).Status
	path := field.NewPath("status")
	errs := nonNegative(int64(st.Replicas), path.Child("replicas"))
	errs = append(errs, nonNegative(int64(st.ReadyReplicas), path.Child("readyReplicas"))...)
	errs = append(errs, nonNegative(int64(st.CurrentReplicas), path.Child("currentReplicas"))...)
	errs = append(errs, nonNegative(int64(st.UpdatedReplicas), path.Child("updatedReplicas"))...)
	errs = append(errs, nonNegative(int64(st.AvailableReplicas), path.Child("availableReplicas"))...)
	errs = append(errs, nonNegative(st.ObservedGeneration, path.Child("observedGeneration"))...)
	errs = append(errs, nonNegativePtr(st.CollisionCount, path.Child("collisionCount"))...)
	const msg = "cannot be greater than status.replicas"
	for _, c := range []struct {
		name string
		v    int32
	}{{"readyReplicas", st.ReadyReplicas}, {"currentReplicas", st.CurrentReplicas}, {"updatedReplicas", st.UpdatedReplicas}, {"availableReplicas", st.AvailableReplicas}} {
		if c.v > st.Replicas {
			errs = append(errs, field.Invalid(path.Child(c.name), c.v, msg))
		}
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		errs = append(errs, field.Invalid(path.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than status.readyReplicas"))
	}
	return append(errs, validateCollisionCount(st.CollisionCount, o.CollisionCount, path.Child("collisionCount"))...)
}

func validateStatefulSetSpec(spec *appsv1.StatefulSetSpec, path *field.Path, update bool) field.ErrorList {
	var errs field.ErrorList
	switch spec.PodManagementPolicy {
	case "":
		errs = append(errs, field.Required(path.Child("podManagementPolicy"), ""))
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.Invalid(path.Child("podManagementPolicy"), spec.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	us := &spec.UpdateStrategy
	switch us.Type {
	case "":
		errs = append(errs, field.Required(path.Child("updateStrategy"), ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if us.RollingUpdate != nil {
			errs = append(errs, field.Invalid(path.Child("updateStrategy", "rollingUpdate"), us.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := us.RollingUpdate; ru != nil {
			p := path.Child("updateStrategy", "rollingUpdate")
			if ru.Partition != nil {
				errs = append(errs, nonNegative(int64(*ru.Partition), p.Child("partition"))...)
			}
			if ru.MaxUnavailable != nil {
				mp := p.Child("maxUnavailable")
				errs = append(errs, validatePositiveIntOrPercent(*ru.MaxUnavailable, mp)...)
				if intOrPercentValue(*ru.MaxUnavailable) == 0 {
					errs = append(errs, field.Invalid(mp, *ru.MaxUnavailable, "cannot be 0"))
				}
				errs = append(errs, notMoreThan100Percent(*ru.MaxUnavailable, mp)...)
			}
		}
	default:
		errs = append(errs, field.Invalid(path.Child("updateStrategy"), us,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		pp := path.Child("persistentVolumeClaimRetentionPolicy")
		errs = append(errs, validateRetention(p.WhenDeleted, pp.Child("whenDeleted"))...)
		errs = append(errs, validateRetention(p.WhenScaled, pp.Child("whenScaled"))...)
	}
	errs = append(errs, nonNegative(int64(replicas(spec.Replicas)), path.Child("replicas"))...)
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), path.Child("minReadySeconds"))...)
	if spec.Ordinals != nil {
		errs = append(errs, nonNegative(int64(spec.Ordinals.Start), path.Child("ordinals.start"))...)
	}
	if !update && spec.ServiceName != "" {
		for _, msg := range validation.IsDNS1123Label(spec.ServiceName) {
			errs = append(errs, field.Invalid(path.Child("serviceName"), spec.ServiceName, msg))
		}
	}
	sel, selErrs := validateSelector(spec.Selector, "statefulset", "", path.Child("selector"))
	errs = append(errs, selErrs...)
	if sel != nil {
		// Upstream checks only the template's labels and annotations
		// here, not its pod spec.
		t := &spec.Template
		tp := path.Child("template")
		if !sel.Empty() && !sel.Matches(labels.Set(t.Labels)) {
			errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
		}
		errs = append(errs, metav1validation.ValidateLabels(t.Labels, tp.Child("labels"))...)
		errs = append(errs, apimachineryvalidation.ValidateAnnotations(t.Annotations, tp.Child("annotations"))...)
	}
	if spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(path.Child("template", "spec", "restartPolicy"), spec.Template.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if spec.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(path.Child("template", "spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in StatefulSet is not Supported"))
	}
	return errs
}

func validateRetention(p appsv1.PersistentVolumeClaimRetentionPolicyType, path *field.Path) field.ErrorList {
	switch p {
	case appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType:
		return nil
	}
	return field.ErrorList{field.NotSupported(path, p, []string{
		string(appsv1.RetainPersistentVolumeClaimRetentionPolicyType), string(appsv1.DeletePersistentVolumeClaimRetentionPolicyType)})}
}

// Columns are kubectl's statefulset columns.
func (statefulSetStrategy) Columns() []metav1.TableColumnDefinition {
	return append([]metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Ready", "string", "Number of the pod with ready state", 0),
		registry.AgeColumn(),
	}, containerColumns()...)
}

// Row prints one statefulset.
func (statefulSetStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	s := obj.(*appsv1.StatefulSet)
	names, images := podspec.ContainerCells(&s.Spec.Template.Spec)
	return []interface{}{
		s.Name,
		fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, replicas(s.Spec.Replicas)),
		registry.Age(s.CreationTimestamp, now),
		names, images,
	}
}
