package batch

import (
	"reflect"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

type wantErr struct {
	typ   field.ErrorType
	field string
}

func checkErrs(t *testing.T, name string, errs field.ErrorList, want []wantErr) {
	t.Helper()
	if len(errs) != len(want) {
		t.Errorf("%s: got errors %v, want %v", name, errs, want)
		return
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			found = found || (e.Type == w.typ && e.Field == w.field)
		}
		if !found {
			t.Errorf("%s: missing %v in %v", name, w, errs)
		}
	}
}

func strategy(t *testing.T, plural string) registry.Strategy {
	t.Helper()
	for _, r := range Resources() {
		if r.Plural == plural {
			return r.Strategy
		}
	}
	t.Fatalf("no resource %s", plural)
	return nil
}

func TestResources(t *testing.T) {
	rs := Resources()
	if len(rs) != 2 {
		t.Fatalf("%d resources", len(rs))
	}
	j, c := rs[0], rs[1]
	if j.Plural != "jobs" || j.Singular != "job" || len(j.ShortNames) != 0 || !reflect.DeepEqual(j.Categories, []string{"all"}) ||
		!j.Namespaced || !j.Status || j.GVK.GroupVersion().String() != "batch/v1" {
		t.Errorf("jobs: %+v", j)
	}
	if c.Plural != "cronjobs" || c.Singular != "cronjob" || !reflect.DeepEqual(c.ShortNames, []string{"cj"}) ||
		!reflect.DeepEqual(c.Categories, []string{"all"}) || !c.Namespaced || !c.Status {
		t.Errorf("cronjobs: %+v", c)
	}
	for _, r := range rs {
		if len(r.Strategy.Columns()) != len(r.Strategy.Row(r.New(), time.Now())) {
			t.Errorf("%s: columns and cells differ", r.Plural)
		}
	}
}

func newJob() *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "default", UID: types.UID("uid-1")},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "pi"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "pi", Image: "perl:5.34"}}},
		}},
	}
}

// created runs what the server runs on create.
func created(t *testing.T, j *batchv1.Job) *batchv1.Job {
	s := strategy(t, "jobs")
	s.Default(j)
	s.PrepareForCreate(j)
	return j
}

func TestJobDefaultAndSelector(t *testing.T) {
	j := created(t, newJob())
	sp := j.Spec
	if *sp.Completions != 1 || *sp.Parallelism != 1 || *sp.BackoffLimit != 6 || *sp.CompletionMode != batchv1.NonIndexedCompletion ||
		*sp.Suspend || *sp.ManualSelector || *sp.PodReplacementPolicy != batchv1.TerminatingOrFailed {
		t.Errorf("defaults: %+v", sp)
	}
	if sp.Template.Spec.DNSPolicy != corev1.DNSClusterFirst || sp.Template.Spec.Containers[0].TerminationMessagePath == "" {
		t.Errorf("pod template defaults missing: %+v", sp.Template.Spec)
	}
	wantLabels := map[string]string{"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
		"controller-uid": "uid-1", "batch.kubernetes.io/controller-uid": "uid-1"}
	if !reflect.DeepEqual(sp.Template.Labels, wantLabels) {
		t.Errorf("template labels %v", sp.Template.Labels)
	}
	if !reflect.DeepEqual(sp.Selector.MatchLabels, map[string]string{"batch.kubernetes.io/controller-uid": "uid-1"}) {
		t.Errorf("selector %v", sp.Selector)
	}
	if !reflect.DeepEqual(j.Labels, map[string]string{"app": "pi"}) {
		t.Errorf("job labels copied from the template: %v", j.Labels)
	}
	checkErrs(t, "generated job", strategy(t, "jobs").ValidateCreate(j), nil)

	// Parallelism alone leaves completions nil.
	p := newJob()
	p.Spec.Parallelism = ptr(int32(3))
	p = created(t, p)
	if p.Spec.Completions != nil || *p.Spec.Parallelism != 3 {
		t.Errorf("parallel job: %+v", p.Spec)
	}
	// backoffLimitPerIndex changes the backoffLimit default.
	b := newJob()
	b.Spec.BackoffLimitPerIndex = ptr(int32(1))
	strategy(t, "jobs").Default(b)
	if *b.Spec.BackoffLimit != 2147483647 {
		t.Errorf("backoffLimit with per-index limit: %d", *b.Spec.BackoffLimit)
	}
	// A pod failure policy selects the Failed replacement policy.
	f := newJob()
	f.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
		Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}}}}
	f = created(t, f)
	if *f.Spec.PodReplacementPolicy != batchv1.Failed || f.Spec.PodFailurePolicy.Rules[0].OnPodConditions[0].Status != corev1.ConditionTrue {
		t.Errorf("pod failure policy defaults: %+v", f.Spec)
	}
	checkErrs(t, "pod failure policy", strategy(t, "jobs").ValidateCreate(f), nil)

	// A manual selector is left alone.
	m := newJob()
	m.Spec.ManualSelector = ptr(true)
	m.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pi"}}
	m = created(t, m)
	if len(m.Spec.Template.Labels) != 1 || len(m.Spec.Selector.MatchLabels) != 1 {
		t.Errorf("manual selector changed: %+v", m.Spec)
	}
	checkErrs(t, "manual selector", strategy(t, "jobs").ValidateCreate(m), nil)
}

func TestJobValidate(t *testing.T) {
	s := strategy(t, "jobs")
	tests := []struct {
		name   string
		modify func(*batchv1.Job)
		want   []wantErr
	}{
		{"negative completions and parallelism", func(j *batchv1.Job) {
			j.Spec.Completions = ptr(int32(-1))
			j.Spec.Parallelism = ptr(int32(-1))
		}, []wantErr{{field.ErrorTypeInvalid, "spec.completions"}, {field.ErrorTypeInvalid, "spec.parallelism"}}},
		{"restart always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			[]wantErr{{field.ErrorTypeRequired, "spec.template.spec.restartPolicy"}}},
		{"foreign selector", func(j *batchv1.Job) {
			j.Spec.Selector.MatchLabels = map[string]string{"app": "pi"}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.selector"}}},
		{"indexed without completions", func(j *batchv1.Job) {
			j.Spec.CompletionMode = ptr(batchv1.IndexedCompletion)
			j.Spec.Completions = nil
		}, []wantErr{{field.ErrorTypeRequired, "spec.completions"}}},
		{"per-index limit on non-indexed", func(j *batchv1.Job) { j.Spec.BackoffLimitPerIndex = ptr(int32(1)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.backoffLimitPerIndex"}}},
		{"bad replacement policy", func(j *batchv1.Job) { j.Spec.PodReplacementPolicy = ptr(batchv1.PodReplacementPolicy("Sometimes")) },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.podReplacementPolicy"}}},
		{"failure policy rule without matcher", func(j *batchv1.Job) {
			j.Spec.PodReplacementPolicy = ptr(batchv1.Failed)
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionFailJob}}}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.podFailurePolicy.rules[0]"}}},
		{"unordered exit codes", func(j *batchv1.Job) {
			j.Spec.PodReplacementPolicy = ptr(batchv1.Failed)
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionFailJob,
				OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{3, 1}}}}}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.podFailurePolicy.rules[0].onExitCodes.values"}}},
	}
	for _, tt := range tests {
		j := created(t, newJob())
		tt.modify(j)
		checkErrs(t, tt.name, s.ValidateCreate(j), tt.want)
	}
	j := created(t, newJob())
	j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
	msg := s.ValidateCreate(j).ToAggregate().Error()
	if want := `spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"`; msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
}

func TestJobUpdate(t *testing.T) {
	s := strategy(t, "jobs")
	old := created(t, newJob())
	cur := old.DeepCopy()
	cur.Spec.Parallelism = ptr(int32(2))
	cur.Spec.Suspend = ptr(true)
	checkErrs(t, "parallelism and suspend", s.ValidateUpdate(cur, old), nil)

	cur = old.DeepCopy()
	cur.Spec.Completions = ptr(int32(5))
	cur.Spec.Template.Spec.Containers[0].Image = "perl:6"
	cur.Spec.Selector.MatchLabels["x"] = "y"
	checkErrs(t, "immutable fields", s.ValidateUpdate(cur, old), []wantErr{
		{field.ErrorTypeInvalid, "spec.completions"}, {field.ErrorTypeInvalid, "spec.template"},
		{field.ErrorTypeInvalid, "spec.selector"}, {field.ErrorTypeInvalid, "spec.template.metadata.labels"},
		{field.ErrorTypeInvalid, "spec.selector"}}) // immutable, and no longer the generated one

	// A suspended job that has not started may change scheduling directives.
	susp := old.DeepCopy()
	susp.Spec.Suspend = ptr(true)
	cur = susp.DeepCopy()
	cur.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "a"}
	checkErrs(t, "suspended node selector", s.ValidateUpdate(cur, susp), nil)
	checkErrs(t, "running node selector", s.ValidateUpdate(cur, old), []wantErr{{field.ErrorTypeInvalid, "spec.template"}})
	started := susp.DeepCopy()
	started.Status.StartTime = &metav1.Time{Time: time.Now()}
	checkErrs(t, "started node selector", s.ValidateUpdate(cur, started), []wantErr{{field.ErrorTypeInvalid, "spec.template"}})

	// Status.
	st := old.DeepCopy()
	st.Status.Succeeded = -1
	checkErrs(t, "negative succeeded", s.ValidateStatusUpdate(st, old), []wantErr{{field.ErrorTypeInvalid, "status.succeeded"}})
}

func TestJobFields(t *testing.T) {
	s := strategy(t, "jobs")
	if f := s.Fields(&batchv1.Job{}); len(f) != 1 || f["status.successful"] != "0" {
		t.Errorf("empty job fields %v", f)
	}
	if f := s.Fields(&batchv1.Job{Status: batchv1.JobStatus{Succeeded: 4}}); f["status.successful"] != "4" {
		t.Errorf("fields %v", f)
	}
}

func TestJobRow(t *testing.T) {
	s := strategy(t, "jobs")
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { v := metav1.NewTime(now.Add(d)); return &v }
	cond := func(typ batchv1.JobConditionType, st corev1.ConditionStatus) []batchv1.JobCondition {
		return []batchv1.JobCondition{{Type: typ, Status: st}}
	}
	meta := metav1.ObjectMeta{Name: "pi", CreationTimestamp: *at(-time.Hour)}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": "u"}}
	tmpl := newJob().Spec.Template
	tests := []struct {
		name                           string
		job                            batchv1.Job
		status, completions, took, age string
	}{
		{"complete", batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Completions: ptr(int32(1)), Selector: sel, Template: tmpl},
			Status: batchv1.JobStatus{Succeeded: 1, StartTime: at(-50 * time.Minute), CompletionTime: at(-49 * time.Minute), Conditions: cond(batchv1.JobComplete, corev1.ConditionTrue)}},
			"Complete", "1/1", "60s", "60m"},
		{"running", batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Completions: ptr(int32(3)), Selector: sel, Template: tmpl},
			Status: batchv1.JobStatus{Succeeded: 1, StartTime: at(-10 * time.Minute)}},
			"Running", "1/3", "10m", "60m"},
		{"failed", batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Parallelism: ptr(int32(2)), Selector: sel, Template: tmpl},
			Status: batchv1.JobStatus{Conditions: cond(batchv1.JobFailed, corev1.ConditionTrue)}},
			"Failed", "0/1 of 2", "", "60m"},
		{"suspended", batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Selector: sel, Template: tmpl},
			Status: batchv1.JobStatus{Conditions: cond(batchv1.JobSuspended, corev1.ConditionTrue)}},
			"Suspended", "0/1", "", "60m"},
		{"false complete", batchv1.Job{ObjectMeta: meta, Spec: batchv1.JobSpec{Selector: sel, Template: tmpl},
			Status: batchv1.JobStatus{Conditions: cond(batchv1.JobComplete, corev1.ConditionFalse)}},
			"Running", "0/1", "", "60m"},
		{"terminating", batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "pi", CreationTimestamp: meta.CreationTimestamp, DeletionTimestamp: at(0)},
			Spec: batchv1.JobSpec{Selector: sel, Template: tmpl}},
			"Terminating", "0/1", "", "60m"},
	}
	for _, tt := range tests {
		got := s.Row(&tt.job, now)
		want := []interface{}{"pi", tt.status, tt.completions, tt.took, tt.age, "pi", "perl:5.34", "batch.kubernetes.io/controller-uid=u"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: row %#v, want %#v", tt.name, got, want)
		}
	}
	var names []string
	for _, c := range s.Columns() {
		names = append(names, c.Name)
	}
	if want := []string{"Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"}; !reflect.DeepEqual(names, want) {
		t.Errorf("columns %v", names)
	}
}

func newCronJob() *batchv1.CronJob {
	j := newJob()
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: j.Spec.Template}}},
	}
}

func TestCronJob(t *testing.T) {
	s := strategy(t, "cronjobs")
	c := newCronJob()
	s.Default(c)
	if c.Spec.ConcurrencyPolicy != batchv1.AllowConcurrent || *c.Spec.Suspend || *c.Spec.SuccessfulJobsHistoryLimit != 3 ||
		*c.Spec.FailedJobsHistoryLimit != 1 || c.Spec.JobTemplate.Spec.Template.Spec.SchedulerName != corev1.DefaultSchedulerName {
		t.Errorf("defaults %+v", c.Spec)
	}
	checkErrs(t, "valid cronjob", s.ValidateCreate(c), nil)

	tests := []struct {
		name   string
		modify func(*batchv1.CronJob)
		want   []wantErr
	}{
		{"no schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "" }, []wantErr{{field.ErrorTypeRequired, "spec.schedule"}}},
		{"bad schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "61 * * * *" }, []wantErr{{field.ErrorTypeInvalid, "spec.schedule"}}},
		{"descriptor", func(c *batchv1.CronJob) { c.Spec.Schedule = "@hourly" }, nil},
		{"TZ in schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "TZ=UTC 0 * * * *" }, []wantErr{{field.ErrorTypeInvalid, "spec.schedule"}}},
		{"CRON_TZ in schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "CRON_TZ=UTC 0 * * * *" }, []wantErr{{field.ErrorTypeInvalid, "spec.schedule"}}},
		{"time zone", func(c *batchv1.CronJob) { c.Spec.TimeZone = ptr("Europe/Berlin") }, nil},
		{"unknown time zone", func(c *batchv1.CronJob) { c.Spec.TimeZone = ptr("Mars/Olympus") }, []wantErr{{field.ErrorTypeInvalid, "spec.timeZone"}}},
		{"local time zone", func(c *batchv1.CronJob) { c.Spec.TimeZone = ptr("Local") }, []wantErr{{field.ErrorTypeInvalid, "spec.timeZone"}}},
		{"empty time zone", func(c *batchv1.CronJob) { c.Spec.TimeZone = ptr("") }, []wantErr{{field.ErrorTypeInvalid, "spec.timeZone"}}},
		{"bad concurrency", func(c *batchv1.CronJob) { c.Spec.ConcurrencyPolicy = "Sometimes" }, []wantErr{{field.ErrorTypeNotSupported, "spec.concurrencyPolicy"}}},
		{"selector", func(c *batchv1.CronJob) { c.Spec.JobTemplate.Spec.Selector = &metav1.LabelSelector{} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.jobTemplate.spec.selector"}}},
		{"restart always", func(c *batchv1.CronJob) {
			c.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		},
			[]wantErr{{field.ErrorTypeRequired, "spec.jobTemplate.spec.template.spec.restartPolicy"}}},
		{"long name", func(c *batchv1.CronJob) { c.Name = strings.Repeat("a", 53) }, []wantErr{{field.ErrorTypeInvalid, "metadata.name"}}},
		{"negative history", func(c *batchv1.CronJob) { c.Spec.FailedJobsHistoryLimit = ptr(int32(-1)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.failedJobsHistoryLimit"}}},
	}
	for _, tt := range tests {
		c := newCronJob()
		s.Default(c)
		tt.modify(c)
		checkErrs(t, tt.name, s.ValidateCreate(c), tt.want)
	}
	c = newCronJob()
	c.Spec.Schedule = "TZ=UTC 0 * * * *"
	s.Default(c)
	got := s.ValidateCreate(c).ToAggregate().Error()
	if want := `spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	// An old schedule that used TZ may keep it on update.
	checkErrs(t, "TZ kept on update", s.ValidateUpdate(c, c.DeepCopy()), nil)
}

func TestCronJobRow(t *testing.T) {
	s := strategy(t, "cronjobs")
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	c := newCronJob()
	c.CreationTimestamp = metav1.NewTime(now.Add(-48 * time.Hour))
	last := metav1.NewTime(now.Add(-5 * time.Minute))
	c.Status = batchv1.CronJobStatus{Active: []corev1.ObjectReference{{Name: "a"}}, LastScheduleTime: &last}
	c.Spec.Suspend = ptr(true)
	want := []interface{}{"hello", "*/5 * * * *", "<none>", "True", int64(1), "5m", "2d", "pi", "perl:5.34", "<none>"}
	if got := s.Row(c, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	c.Spec.TimeZone = ptr("UTC")
	c.Spec.Suspend = nil
	c.Status = batchv1.CronJobStatus{}
	want = []interface{}{"hello", "*/5 * * * *", "UTC", "<unset>", int64(0), "<none>", "2d", "pi", "perl:5.34", "<none>"}
	if got := s.Row(c, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	var names []string
	for _, col := range s.Columns() {
		names = append(names, col.Name)
	}
	if w := []string{"Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age", "Containers", "Images", "Selector"}; !reflect.DeepEqual(names, w) {
		t.Errorf("columns %v", names)
	}
}
