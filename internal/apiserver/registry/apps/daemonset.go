package apps

import (
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/podspec"
)

// templateGenerationAnnotation carries the internal spec.templateGeneration
// of a DaemonSet in apps/v1, as upstream's conversion does.
const templateGenerationAnnotation = appsv1.DeprecatedTemplateGeneration

type daemonSetStrategy struct{ registry.Base }

// Default applies upstream's DaemonSet defaults: RollingUpdate with
// maxUnavailable 1 and maxSurge 0, revisionHistoryLimit 10, and the pod
// template defaults.
func (daemonSetStrategy) Default(obj runtime.Object) {
	ds := obj.(*appsv1.DaemonSet)
	s := &ds.Spec.UpdateStrategy
	if s.Type == "" {
		s.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if s.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if s.RollingUpdate == nil {
			s.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if s.RollingUpdate.MaxUnavailable == nil {
			s.RollingUpdate.MaxUnavailable = ptr(intstr.FromInt32(1))
		}
		if s.RollingUpdate.MaxSurge == nil {
			s.RollingUpdate.MaxSurge = ptr(intstr.FromInt32(0))
		}
	}
	if ds.Spec.RevisionHistoryLimit == nil {
		ds.Spec.RevisionHistoryLimit = ptr(int32(10))
	}
	podspec.DefaultTemplate(&ds.Spec.Template)
}

// PrepareForCreate clears the status and starts the template generation
// at 1.
func (daemonSetStrategy) PrepareForCreate(obj runtime.Object) {
	ds := obj.(*appsv1.DaemonSet)
	ds.Status = appsv1.DaemonSetStatus{}
	setTemplateGeneration(ds, 1)
}

// PrepareForUpdate bumps the template generation when the template
// changes.
func (daemonSetStrategy) PrepareForUpdate(obj, old runtime.Object) {
	ds, o := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
	gen := templateGeneration(o)
	if !equality.Semantic.DeepEqual(ds.Spec.Template, o.Spec.Template) {
		gen++
	}
	setTemplateGeneration(ds, gen)
}

func templateGeneration(ds *appsv1.DaemonSet) int64 {
	n, err := strconv.ParseInt(ds.Annotations[templateGenerationAnnotation], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

func setTemplateGeneration(ds *appsv1.DaemonSet, gen int64) {
	if gen == 0 {
		delete(ds.Annotations, templateGenerationAnnotation)
		return
	}
	if ds.Annotations == nil {
		ds.Annotations = map[string]string{}
	}
	ds.Annotations[templateGenerationAnnotation] = strconv.FormatInt(gen, 10)
}

// ValidateCreate checks the spec.
func (daemonSetStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateDaemonSetSpec(&obj.(*appsv1.DaemonSet).Spec, field.NewPath("spec"))
}

// ValidateUpdate checks the spec and that the selector did not change.
func (daemonSetStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	ds, o := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
	errs := validateDaemonSetSpec(&ds.Spec, field.NewPath("spec"))
	return append(errs, apimachineryvalidation.ValidateImmutableField(ds.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))...)
}

// ValidateStatusUpdate checks the status counters.
func (daemonSetStrategy) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	st, o := &obj.(*appsv1.DaemonSet).Status, &old.(*appsv1.DaemonSet).Status
	path := field.NewPath("status")
	errs := nonNegative(int64(st.CurrentNumberScheduled), path.Child("currentNumberScheduled"))
	errs = append(errs, nonNegative(int64(st.NumberMisscheduled), path.Child("numberMisscheduled"))...)
	errs = append(errs, nonNegative(int64(st.DesiredNumberScheduled), path.Child("desiredNumberScheduled"))...)
	errs = append(errs, nonNegative(int64(st.NumberReady), path.Child("numberReady"))...)
	errs = append(errs, nonNegative(st.ObservedGeneration, path.Child("observedGeneration"))...)
	errs = append(errs, nonNegative(int64(st.UpdatedNumberScheduled), path.Child("updatedNumberScheduled"))...)
	errs = append(errs, nonNegative(int64(st.NumberAvailable), path.Child("numberAvailable"))...)
	errs = append(errs, nonNegative(int64(st.NumberUnavailable), path.Child("numberUnavailable"))...)
	errs = append(errs, nonNegativePtr(st.CollisionCount, path.Child("collisionCount"))...)
	return append(errs, validateCollisionCount(st.CollisionCount, o.CollisionCount, path.Child("collisionCount"))...)
}

func validateDaemonSetSpec(spec *appsv1.DaemonSetSpec, path *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabelSelector(spec.Selector, metav1validation.LabelSelectorValidationOptions{}, path.Child("selector"))
	if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err == nil && !sel.Matches(labels.Set(spec.Template.Labels)) {
		errs = append(errs, field.Invalid(path.Child("template", "metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	if spec.Selector != nil && len(spec.Selector.MatchLabels)+len(spec.Selector.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(path.Child("selector"), spec.Selector, "empty selector is invalid for daemonset"))
	}
	errs = append(errs, podspec.ValidateTemplate(&spec.Template, path.Child("template"))...)
	errs = append(errs, validateAlwaysRestart(&spec.Template.Spec, "DaemonSet", path.Child("template", "spec"))...)
	errs = append(errs, nonNegative(int64(spec.MinReadySeconds), path.Child("minReadySeconds"))...)
	errs = append(errs, validateDaemonSetUpdateStrategy(&spec.UpdateStrategy, path.Child("updateStrategy"))...)
	errs = append(errs, nonNegativePtr(spec.RevisionHistoryLimit, path.Child("revisionHistoryLimit"))...)
	return errs
}

func validateDaemonSetUpdateStrategy(s *appsv1.DaemonSetUpdateStrategy, path *field.Path) field.ErrorList {
	switch s.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
		return nil
	case appsv1.RollingUpdateDaemonSetStrategyType:
		ru := s.RollingUpdate
		if ru == nil {
			return field.ErrorList{field.Required(path.Child("rollingUpdate"), "")}
		}
		p := path.Child("rollingUpdate")
		var unavailable, surge intstr.IntOrString
		if ru.MaxUnavailable != nil {
			unavailable = *ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			surge = *ru.MaxSurge
		}
		errs := validatePositiveIntOrPercent(unavailable, p.Child("maxUnavailable"))
		errs = append(errs, validatePositiveIntOrPercent(surge, p.Child("maxSurge"))...)
		errs = append(errs, notMoreThan100Percent(unavailable, p.Child("maxUnavailable"))...)
		errs = append(errs, notMoreThan100Percent(surge, p.Child("maxSurge"))...)
		hasUnavailable, hasSurge := intOrPercentValue(unavailable) != 0, intOrPercentValue(surge) != 0
		switch {
		case hasUnavailable && hasSurge:
			errs = append(errs, field.Invalid(p.Child("maxSurge"), surge, "may not be set when maxUnavailable is non-zero"))
		case !hasUnavailable && !hasSurge:
			errs = append(errs, field.Required(p.Child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
		}
		return errs
	default:
		return field.ErrorList{field.NotSupported(path, s, []string{
			string(appsv1.RollingUpdateDaemonSetStrategyType), string(appsv1.OnDeleteDaemonSetStrategyType)})}
	}
}

// Columns are kubectl's daemonset columns.
func (daemonSetStrategy) Columns() []metav1.TableColumnDefinition {
	st := appsv1.DaemonSetStatus{}.SwaggerDoc()
	return append([]metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Desired", "integer", st["desiredNumberScheduled"], 0),
		col("Current", "integer", st["currentNumberScheduled"], 0),
		col("Ready", "integer", st["numberReady"], 0),
		col("Up-to-date", "integer", st["updatedNumberScheduled"], 0),
		col("Available", "integer", st["numberAvailable"], 0),
		col("Node Selector", "string", corev1.PodSpec{}.SwaggerDoc()["nodeSelector"], 0),
		registry.AgeColumn(),
	}, append(containerColumns(), col("Selector", "string", appsv1.DaemonSetSpec{}.SwaggerDoc()["selector"], 1))...)
}

// Row prints one daemonset.
func (daemonSetStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	ds := obj.(*appsv1.DaemonSet)
	st := &ds.Status
	names, images := podspec.ContainerCells(&ds.Spec.Template.Spec)
	return []interface{}{
		ds.Name,
		int64(st.DesiredNumberScheduled),
		int64(st.CurrentNumberScheduled),
		int64(st.NumberReady),
		int64(st.UpdatedNumberScheduled),
		int64(st.NumberAvailable),
		labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector),
		registry.Age(ds.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(ds.Spec.Selector),
	}
}
