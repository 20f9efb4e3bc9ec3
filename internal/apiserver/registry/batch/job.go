// Package batch describes the batch/v1 API group's resources (jobs and
// cronjobs) and their strategies: upstream's defaults, the generated Job
// selector, validation, field-selector fields and kubectl table columns.
package batch

import (
	"fmt"
	"math"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/podspec"
)

// Resources returns the batch/v1 resources the API server serves.
func Resources() []*registry.Resource {
	gvk := batchv1.SchemeGroupVersion.WithKind
	return []*registry.Resource{
		{
			GVK: gvk("Job"), Plural: "jobs", Singular: "job",
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:      func() runtime.Object { return &batchv1.Job{} },
			NewList:  func() runtime.Object { return &batchv1.JobList{} },
			Strategy: jobStrategy{},
		},
		{
			GVK: gvk("CronJob"), Plural: "cronjobs", Singular: "cronjob", ShortNames: []string{"cj"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:      func() runtime.Object { return &batchv1.CronJob{} },
			NewList:  func() runtime.Object { return &batchv1.CronJobList{} },
			Strategy: cronJobStrategy{},
		},
	}
}

// Upstream's limits for indexed jobs and pod failure policies.
const (
	maxParallelismForIndexedJob = 100000
	maxFailedIndexes            = 100000
	maxPodFailurePolicyRules    = 20
	maxExitCodeValues           = 255
	maxPodConditionPatterns     = 20
	maxManagedByLength          = 63
)

// The unprefixed labels upstream still sets on a job's pods.
const (
	legacyJobNameLabel       = "job-name"
	legacyControllerUIDLabel = "controller-uid"
)

func ptr[T any](v T) *T { return &v }

type jobStrategy struct{ registry.Base }

// Default applies upstream's batch/v1 Job defaults and the pod template
// defaults.
func (jobStrategy) Default(obj runtime.Object) {
	j := obj.(*batchv1.Job)
	defaultJobSpec(&j.Spec)
	if j.Spec.Template.Labels != nil && len(j.Labels) == 0 {
		j.Labels = make(map[string]string, len(j.Spec.Template.Labels))
		for k, v := range j.Spec.Template.Labels {
			j.Labels[k] = v
		}
	}
}

func defaultJobSpec(s *batchv1.JobSpec) {
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions = ptr(int32(1))
		s.Parallelism = ptr(int32(1))
	}
	if s.Parallelism == nil {
		s.Parallelism = ptr(int32(1))
	}
	if s.BackoffLimit == nil {
		if s.BackoffLimitPerIndex != nil {
			s.BackoffLimit = ptr(int32(math.MaxInt32))
		} else {
			s.BackoffLimit = ptr(int32(6))
		}
	}
	if s.CompletionMode == nil {
		s.CompletionMode = ptr(batchv1.NonIndexedCompletion)
	}
	if s.Suspend == nil {
		s.Suspend = ptr(false)
	}
	if s.PodFailurePolicy != nil {
		for _, rule := range s.PodFailurePolicy.Rules {
			for i := range rule.OnPodConditions {
				if rule.OnPodConditions[i].Status == "" {
					rule.OnPodConditions[i].Status = corev1.ConditionTrue
				}
			}
		}
	}
	if s.PodReplacementPolicy == nil {
		if s.PodFailurePolicy != nil {
			s.PodReplacementPolicy = ptr(batchv1.Failed)
		} else {
			s.PodReplacementPolicy = ptr(batchv1.TerminatingOrFailed)
		}
	}
	if s.ManualSelector == nil {
		s.ManualSelector = ptr(false)
	}
	podspec.DefaultTemplate(&s.Template)
}

// PrepareForCreate clears the status and, unless spec.manualSelector is
// set, generates the selector and the pod template labels from the job's
// name and uid.
func (jobStrategy) PrepareForCreate(obj runtime.Object) {
	j := obj.(*batchv1.Job)
	j.Status = batchv1.JobStatus{}
	if j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
		generateSelector(j)
	}
}

func generateSelector(j *batchv1.Job) {
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		legacyJobNameLabel:         j.Name,
		batchv1.JobNameLabel:       j.Name,
		legacyControllerUIDLabel:   string(j.UID),
		batchv1.ControllerUidLabel: string(j.UID),
	} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = v
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
}

// ValidateCreate checks the generated selector and the spec.
func (jobStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateJob(obj.(*batchv1.Job), true)
}

// ValidateUpdate checks the job and its immutable fields: the selector,
// completions of non-indexed jobs, and the template unless the job is
// suspended and has not started.
func (jobStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	j, o := obj.(*batchv1.Job), old.(*batchv1.Job)
	_, hadName := o.Spec.Template.Labels[batchv1.JobNameLabel]
	_, hadUID := o.Spec.Template.Labels[batchv1.ControllerUidLabel]
	errs := validateJob(j, hadName && hadUID)
	spec, oldSpec := &j.Spec, &o.Spec
	path := field.NewPath("spec")
	if spec.CompletionMode != nil && *spec.CompletionMode == batchv1.IndexedCompletion {
		if !equality.Semantic.DeepEqual(spec.Completions, oldSpec.Completions) && spec.Completions != nil &&
			(spec.Parallelism == nil || *spec.Completions != *spec.Parallelism) {
			errs = append(errs, field.Invalid(path.Child("completions"), spec.Completions, "can only be modified in tandem with spec.parallelism"))
		}
	} else {
		errs = append(errs, immutable(spec.Completions, oldSpec.Completions, path.Child("completions"))...)
	}
	errs = append(errs, immutable(spec.Selector, oldSpec.Selector, path.Child("selector"))...)
	oldTemplate := &oldSpec.Template
	suspended := oldSpec.Suspend != nil && *oldSpec.Suspend
	if suspended && o.Status.StartTime == nil {
		// Scheduling directives may change while a suspended job has not
		// started.
		oldTemplate = oldTemplate.DeepCopy()
		t := &spec.Template
		switch {
		case t.Spec.Affinity == nil && oldTemplate.Spec.Affinity != nil:
			oldTemplate.Spec.Affinity.NodeAffinity = nil
			if *oldTemplate.Spec.Affinity == (corev1.Affinity{}) {
				oldTemplate.Spec.Affinity = nil
			}
		case t.Spec.Affinity != nil && oldTemplate.Spec.Affinity == nil:
			oldTemplate.Spec.Affinity = &corev1.Affinity{NodeAffinity: t.Spec.Affinity.NodeAffinity}
		case t.Spec.Affinity != nil && oldTemplate.Spec.Affinity != nil:
			oldTemplate.Spec.Affinity.NodeAffinity = t.Spec.Affinity.NodeAffinity
		}
		oldTemplate.Spec.NodeSelector = t.Spec.NodeSelector
		oldTemplate.Spec.Tolerations = t.Spec.Tolerations
		oldTemplate.Annotations = t.Annotations
		oldTemplate.Labels = t.Labels
		oldTemplate.Spec.SchedulingGates = t.Spec.SchedulingGates
	}
	errs = append(errs, immutable(&spec.Template, oldTemplate, path.Child("template"))...)
	errs = append(errs, immutable(spec.CompletionMode, oldSpec.CompletionMode, path.Child("completionMode"))...)
	errs = append(errs, immutable(spec.PodFailurePolicy, oldSpec.PodFailurePolicy, path.Child("podFailurePolicy"))...)
	errs = append(errs, immutable(spec.BackoffLimitPerIndex, oldSpec.BackoffLimitPerIndex, path.Child("backoffLimitPerIndex"))...)
	errs = append(errs, immutable(spec.ManagedBy, oldSpec.ManagedBy, path.Child("managedBy"))...)
	errs = append(errs, immutable(spec.SuccessPolicy, oldSpec.SuccessPolicy, path.Child("successPolicy"))...)
	return errs
}

// ValidateStatusUpdate checks the status counters.
func (jobStrategy) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	st, o := &obj.(*batchv1.Job).Status, &old.(*batchv1.Job).Status
	path := field.NewPath("status")
	errs := nonNegative(int64(st.Active), path.Child("active"))
	errs = append(errs, nonNegative(int64(st.Succeeded), path.Child("succeeded"))...)
	errs = append(errs, nonNegative(int64(st.Failed), path.Child("failed"))...)
	if st.Ready != nil {
		errs = append(errs, nonNegative(int64(*st.Ready), path.Child("ready"))...)
	}
	if st.Terminating != nil {
		errs = append(errs, nonNegative(int64(*st.Terminating), path.Child("terminating"))...)
	}
	if o.CompletionTime != nil && !equality.Semantic.DeepEqual(st.CompletionTime, o.CompletionTime) {
		errs = append(errs, field.Invalid(path.Child("completionTime"), st.CompletionTime, "field is immutable"))
	}
	if st.StartTime != nil && st.CompletionTime != nil && st.CompletionTime.Before(st.StartTime) {
		errs = append(errs, field.Invalid(path.Child("completionTime"), st.CompletionTime, "completionTime cannot be set before startTime"))
	}
	return errs
}

func immutable(cur, old any, path *field.Path) field.ErrorList {
	return apimachineryvalidation.ValidateImmutableField(cur, old, path)
}

func nonNegative(v int64, path *field.Path) field.ErrorList {
	return apimachineryvalidation.ValidateNonnegativeField(v, path)
}

func validateJob(j *batchv1.Job, prefixedLabels bool) field.ErrorList {
	errs := validateGeneratedSelector(j, prefixedLabels)
	path := field.NewPath("spec")
	errs = append(errs, validateJobSpec(&j.Spec, path)...)
	if j.Spec.Selector == nil {
		errs = append(errs, field.Required(path.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(j.Spec.Selector, metav1validation.LabelSelectorValidationOptions{}, path.Child("selector"))...)
	}
	if sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !sel.Matches(labels.Set(j.Spec.Template.Labels)) {
		errs = append(errs, field.Invalid(path.Child("template", "metadata", "labels"), j.Spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	if m := j.Spec.CompletionMode; m != nil && *m == batchv1.IndexedCompletion && j.Spec.Completions != nil && *j.Spec.Completions > 0 {
		host := fmt.Sprintf("%s-%d", j.Name, *j.Spec.Completions-1)
		if len(validation.IsDNS1123Label(host)) > 0 {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), j.Name, "will not able to create pod with invalid DNS label: "+host))
		}
	}
	return errs
}

// validateGeneratedSelector checks that a generated selector and the
// template labels carry the job's name and uid.
func validateGeneratedSelector(j *batchv1.Job, prefixedLabels bool) field.ErrorList {
	if (j.Spec.ManualSelector != nil && *j.Spec.ManualSelector) || j.Spec.Selector == nil {
		return nil
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	tp := field.NewPath("spec", "template", "metadata")
	want := map[string]string{
		legacyControllerUIDLabel: string(j.UID),
		legacyJobNameLabel:       j.Name,
	}
	keys := []string{legacyControllerUIDLabel, legacyJobNameLabel}
	if prefixedLabels {
		want[batchv1.ControllerUidLabel] = string(j.UID)
		want[batchv1.JobNameLabel] = j.Name
		keys = append(keys, batchv1.ControllerUidLabel, batchv1.JobNameLabel)
	}
	for _, k := range keys {
		errs = append(errs, hasLabel(j.Spec.Template.Labels, tp, k, want[k])...)
	}
	if sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !sel.Matches(labels.Set(want)) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}

func hasLabel(l map[string]string, path *field.Path, key, want string) field.ErrorList {
	got, ok := l[key]
	switch {
	case !ok:
		return field.ErrorList{field.Required(path.Child("labels").Key(key), "must be '"+want+"'")}
	case got != want:
		return field.ErrorList{field.Invalid(path.Child("labels").Key(key), l, "must be '"+want+"'")}
	}
	return nil
}

// validateJobSpec checks a job spec apart from its selector; CronJob job
// templates share it.
func validateJobSpec(s *batchv1.JobSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct {
		v    *int32
		name string
	}{{s.Parallelism, "parallelism"}, {s.Completions, "completions"}, {s.BackoffLimit, "backoffLimit"},
		{s.TTLSecondsAfterFinished, "ttlSecondsAfterFinished"}, {s.BackoffLimitPerIndex, "backoffLimitPerIndex"}} {
		if f.v != nil {
			errs = append(errs, nonNegative(int64(*f.v), path.Child(f.name))...)
		}
	}
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, nonNegative(*s.ActiveDeadlineSeconds, path.Child("activeDeadlineSeconds"))...)
	}
	if s.MaxFailedIndexes != nil {
		errs = append(errs, nonNegative(int64(*s.MaxFailedIndexes), path.Child("maxFailedIndexes"))...)
		if s.BackoffLimitPerIndex == nil {
			errs = append(errs, field.Required(path.Child("backoffLimitPerIndex"), "when maxFailedIndexes is specified"))
		}
	}
	if s.ManagedBy != nil {
		errs = append(errs, validation.IsDomainPrefixedPath(path.Child("managedBy"), *s.ManagedBy)...)
		if len(*s.ManagedBy) > maxManagedByLength {
			errs = append(errs, field.TooLong(path.Child("managedBy"), "", maxManagedByLength))
		}
	}
	indexed := s.CompletionMode != nil && *s.CompletionMode == batchv1.IndexedCompletion
	if m := s.CompletionMode; m != nil {
		if *m != batchv1.NonIndexedCompletion && *m != batchv1.IndexedCompletion {
			errs = append(errs, field.NotSupported(path.Child("completionMode"), m, []batchv1.CompletionMode{batchv1.NonIndexedCompletion, batchv1.IndexedCompletion}))
		}
		if indexed {
			if s.Completions == nil {
				errs = append(errs, field.Required(path.Child("completions"), "when completion mode is Indexed"))
			}
			if s.Parallelism != nil && *s.Parallelism > maxParallelismForIndexedJob {
				errs = append(errs, field.Invalid(path.Child("parallelism"), *s.Parallelism, fmt.Sprintf("must be less than or equal to %d when completion mode is Indexed", maxParallelismForIndexedJob)))
			}
			if s.Completions != nil && s.MaxFailedIndexes != nil && *s.MaxFailedIndexes > *s.Completions {
				errs = append(errs, field.Invalid(path.Child("maxFailedIndexes"), *s.MaxFailedIndexes, "must be less than or equal to completions"))
			}
			if s.MaxFailedIndexes != nil && *s.MaxFailedIndexes > maxFailedIndexes {
				errs = append(errs, field.Invalid(path.Child("maxFailedIndexes"), *s.MaxFailedIndexes, fmt.Sprintf("must be less than or equal to %d", maxFailedIndexes)))
			}
		}
	}
	if !indexed {
		if s.BackoffLimitPerIndex != nil {
			errs = append(errs, field.Invalid(path.Child("backoffLimitPerIndex"), *s.BackoffLimitPerIndex, "requires indexed completion mode"))
		}
		if s.MaxFailedIndexes != nil {
			errs = append(errs, field.Invalid(path.Child("maxFailedIndexes"), *s.MaxFailedIndexes, "requires indexed completion mode"))
		}
		if s.SuccessPolicy != nil {
			errs = append(errs, field.Invalid(path.Child("successPolicy"), *s.SuccessPolicy, "requires indexed completion mode"))
		}
	}
	if s.PodFailurePolicy != nil {
		errs = append(errs, validatePodFailurePolicy(s, path.Child("podFailurePolicy"))...)
	}
	if p := s.PodReplacementPolicy; p != nil {
		switch {
		case s.PodFailurePolicy != nil && *p != batchv1.Failed:
			errs = append(errs, field.NotSupported(path.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed}))
		case *p != batchv1.Failed && *p != batchv1.TerminatingOrFailed:
			errs = append(errs, field.NotSupported(path.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed, batchv1.TerminatingOrFailed}))
		}
	}
	errs = append(errs, podspec.ValidateTemplate(&s.Template, path.Child("template"))...)
	rp := path.Child("template", "spec", "restartPolicy")
	switch r := s.Template.Spec.RestartPolicy; {
	case r == corev1.RestartPolicyAlways || r == "":
		errs = append(errs, field.Required(rp, fmt.Sprintf("valid values: %q, %q", corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)))
	case r != corev1.RestartPolicyOnFailure && r != corev1.RestartPolicyNever:
		errs = append(errs, field.NotSupported(rp, r, []corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	case s.PodFailurePolicy != nil && r != corev1.RestartPolicyNever:
		errs = append(errs, field.Invalid(rp, r, fmt.Sprintf("only %q is supported when podFailurePolicy is specified", corev1.RestartPolicyNever)))
	}
	return errs
}

var (
	failurePolicyActions = []batchv1.PodFailurePolicyAction{batchv1.PodFailurePolicyActionCount,
		batchv1.PodFailurePolicyActionFailIndex, batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionIgnore}
	exitCodeOperators = []batchv1.PodFailurePolicyOnExitCodesOperator{batchv1.PodFailurePolicyOnExitCodesOpIn, batchv1.PodFailurePolicyOnExitCodesOpNotIn}
	conditionStatuses = []corev1.ConditionStatus{corev1.ConditionFalse, corev1.ConditionTrue, corev1.ConditionUnknown}
)

func validatePodFailurePolicy(s *batchv1.JobSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	rulesPath := path.Child("rules")
	rules := s.PodFailurePolicy.Rules
	if len(rules) > maxPodFailurePolicyRules {
		errs = append(errs, field.TooMany(rulesPath, len(rules), maxPodFailurePolicyRules))
	}
	containers := map[string]bool{}
	for _, c := range s.Template.Spec.Containers {
		containers[c.Name] = true
	}
	for _, c := range s.Template.Spec.InitContainers {
		containers[c.Name] = true
	}
	for i := range rules {
		rule, rp := &rules[i], rulesPath.Index(i)
		ap := rp.Child("action")
		switch {
		case rule.Action == "":
			errs = append(errs, field.Required(ap, fmt.Sprintf("valid values: %q", failurePolicyActions)))
		case rule.Action == batchv1.PodFailurePolicyActionFailIndex:
			if s.BackoffLimitPerIndex == nil {
				errs = append(errs, field.Invalid(ap, rule.Action, "requires the backoffLimitPerIndex to be set"))
			}
		case !contains(failurePolicyActions, rule.Action):
			errs = append(errs, field.NotSupported(ap, rule.Action, failurePolicyActions))
		}
		if ec := rule.OnExitCodes; ec != nil {
			errs = append(errs, validateOnExitCodes(ec, containers, rp.Child("onExitCodes"))...)
		}
		if len(rule.OnPodConditions) > 0 {
			cp := rp.Child("onPodConditions")
			if len(rule.OnPodConditions) > maxPodConditionPatterns {
				errs = append(errs, field.TooMany(cp, len(rule.OnPodConditions), maxPodConditionPatterns))
			}
			for j, pat := range rule.OnPodConditions {
				pp := cp.Index(j)
				for _, msg := range validation.IsQualifiedName(string(pat.Type)) {
					errs = append(errs, field.Invalid(pp.Child("type"), string(pat.Type), msg))
				}
				switch {
				case pat.Status == "":
					errs = append(errs, field.Required(pp.Child("status"), fmt.Sprintf("valid values: %q", conditionStatuses)))
				case !contains(conditionStatuses, pat.Status):
					errs = append(errs, field.NotSupported(pp.Child("status"), pat.Status, conditionStatuses))
				}
			}
		}
		switch {
		case rule.OnExitCodes != nil && len(rule.OnPodConditions) > 0:
			errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying both OnExitCodes and OnPodConditions is not supported"))
		case rule.OnExitCodes == nil && len(rule.OnPodConditions) == 0:
			errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying one of OnExitCodes and OnPodConditions is required"))
		}
	}
	return errs
}

func validateOnExitCodes(ec *batchv1.PodFailurePolicyOnExitCodesRequirement, containers map[string]bool, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case ec.Operator == "":
		errs = append(errs, field.Required(path.Child("operator"), fmt.Sprintf("valid values: %q", exitCodeOperators)))
	case !contains(exitCodeOperators, ec.Operator):
		errs = append(errs, field.NotSupported(path.Child("operator"), ec.Operator, exitCodeOperators))
	}
	if ec.ContainerName != nil && !containers[*ec.ContainerName] {
		errs = append(errs, field.Invalid(path.Child("containerName"), *ec.ContainerName, "must be one of the container or initContainer names in the pod template"))
	}
	vp := path.Child("values")
	switch {
	case len(ec.Values) == 0:
		errs = append(errs, field.Invalid(vp, ec.Values, "at least one value is required"))
	case len(ec.Values) > maxExitCodeValues:
		errs = append(errs, field.TooMany(vp, len(ec.Values), maxExitCodeValues))
	}
	seen := map[int32]bool{}
	ordered := true
	for j, v := range ec.Values {
		if ec.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && v == 0 {
			errs = append(errs, field.Invalid(vp.Index(j), v, "must not be 0 for the In operator"))
		}
		if seen[v] {
			errs = append(errs, field.Duplicate(vp.Index(j), v))
		}
		seen[v] = true
		if j > 0 && ec.Values[j-1] > v {
			ordered = false
		}
	}
	if !ordered {
		errs = append(errs, field.Invalid(vp, ec.Values, "must be ordered"))
	}
	return errs
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Fields adds status.successful, as upstream does.
func (jobStrategy) Fields(obj runtime.Object) fields.Set {
	return fields.Set{"status.successful": strconv.Itoa(int(obj.(*batchv1.Job).Status.Succeeded))}
}

func col(name, typ, desc string, priority int32) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc, Priority: priority}
}

func wideColumns(selectorDesc string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		col("Containers", "string", "Names of each container in the template.", 1),
		col("Images", "string", "Images referenced by each container in the template.", 1),
		col("Selector", "string", selectorDesc, 1),
	}
}

// Columns are kubectl's job columns.
func (jobStrategy) Columns() []metav1.TableColumnDefinition {
	return append([]metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Status", "string", "Status of the job.", 0),
		col("Completions", "string", batchv1.JobStatus{}.SwaggerDoc()["succeeded"], 0),
		col("Duration", "string", "Time required to complete the job.", 0),
		registry.AgeColumn(),
	}, wideColumns(batchv1.JobSpec{}.SwaggerDoc()["selector"])...)
}

// Row prints one job.
func (jobStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	j := obj.(*batchv1.Job)
	var completions string
	switch {
	case j.Spec.Completions != nil:
		completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
		completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
	default:
		completions = fmt.Sprintf("%d/1", j.Status.Succeeded)
	}
	var took string
	switch {
	case j.Status.StartTime == nil:
	case j.Status.CompletionTime == nil:
		took = duration.HumanDuration(now.Sub(j.Status.StartTime.Time))
	default:
		took = duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
	}
	names, images := podspec.ContainerCells(&j.Spec.Template.Spec)
	return []interface{}{j.Name, jobStatus(j), completions, took, registry.Age(j.CreationTimestamp, now),
		names, images, metav1.FormatLabelSelector(j.Spec.Selector)}
}

// jobStatus is kubectl's STATUS of a job.
func jobStatus(j *batchv1.Job) string {
	switch {
	case hasCondition(j, batchv1.JobComplete):
		return "Complete"
	case hasCondition(j, batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case hasCondition(j, batchv1.JobSuspended):
		return "Suspended"
	case hasCondition(j, batchv1.JobFailureTarget):
		return "FailureTarget"
	}
	return "Running"
}

// hasCondition reports whether the first condition of type t is true.
func hasCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
