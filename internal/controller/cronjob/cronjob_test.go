package cronjob

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/cron"
)

// t0 is 10:00:30 UTC: the minute's schedule time (10:00) is due.
var t0 = time.Date(2025, 3, 1, 10, 0, 30, 0, time.UTC)

type harness struct {
	t      *testing.T
	client *fake.Clientset
	ctrl   *Controller
	rec    *record.FakeRecorder
}

func newHarness(t *testing.T, now time.Time, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fake.NewClientset(objs...), rec: record.NewFakeRecorder(100)}
	h.client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		j.UID = types.UID("uid-" + j.Name)
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(h.client, 0)
	c, err := New(Config{Client: h.client, Factory: f, Clock: clocktesting.NewFakeClock(now), Recorder: h.rec})
	if err != nil {
		t.Fatal(err)
	}
	h.ctrl = c
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *batchv1.CronJob:
			err = f.Batch().V1().CronJobs().Informer().GetIndexer().Add(o)
		case *batchv1.Job:
			err = c.jobIndexer.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *harness) reconcile() time.Duration {
	h.t.Helper()
	h.client.ClearActions()
	d, err := h.ctrl.Reconcile(context.Background(), "ns/cj")
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) cronJob() *batchv1.CronJob {
	h.t.Helper()
	cj, err := h.client.BatchV1().CronJobs("ns").Get(context.Background(), "cj", metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return cj
}

func (h *harness) names(verb string) []string {
	var out []string
	for _, a := range h.client.Actions() {
		if a.GetVerb() != verb || a.GetResource().Resource != "jobs" {
			continue
		}
		switch a := a.(type) {
		case k8stesting.CreateAction:
			out = append(out, a.GetObject().(*batchv1.Job).Name)
		case k8stesting.DeleteAction:
			out = append(out, a.GetName())
		}
	}
	slices.Sort(out)
	return out
}

func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.rec.Events:
			out = append(out, strings.Fields(e)[1])
		default:
			return out
		}
	}
}

type cjOpt func(*batchv1.CronJob)

func newCronJob(schedule string, opts ...cjOpt) *batchv1.CronJob {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cj", Namespace: "ns", UID: "cj-uid", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))},
		Spec: batchv1.CronJobSpec{
			Schedule: schedule, ConcurrencyPolicy: batchv1.AllowConcurrent,
			SuccessfulJobsHistoryLimit: ptr(int32(3)), FailedJobsHistoryLimit: ptr(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "cj"}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "img"}}}}},
			},
		},
	}
	for _, o := range opts {
		o(cj)
	}
	return cj
}

func ptr[T any](v T) *T { return &v }

func lastScheduled(at time.Time) cjOpt {
	return func(cj *batchv1.CronJob) { cj.Status.LastScheduleTime = &metav1.Time{Time: at} }
}

func policy(p batchv1.ConcurrencyPolicy) cjOpt {
	return func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = p }
}

// ownedJob is a Job of cj scheduled at; cond is "", Complete or Failed.
func ownedJob(cj *batchv1.CronJob, at time.Time, cond batchv1.JobConditionType) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: JobName(cj, at), Namespace: "ns", UID: types.UID("uid-" + JobName(cj, at)),
		CreationTimestamp: metav1.NewTime(at), OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, Kind)}},
		Status: batchv1.JobStatus{StartTime: &metav1.Time{Time: at}}}
	if cond == batchv1.JobFailed {
		// Without a scheduled timestamp the start time orders Jobs.
		return withCond(j, cond)
	}
	j.Annotations = map[string]string{batchv1.CronJobScheduledTimestampAnnotation: at.UTC().Format(time.RFC3339)}
	return withCond(j, cond)
}

func withCond(j *batchv1.Job, cond batchv1.JobConditionType) *batchv1.Job {
	if cond != "" {
		j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: corev1.ConditionTrue}}
		if cond == batchv1.JobComplete {
			j.Status.CompletionTime = &metav1.Time{Time: j.Status.StartTime.Add(10 * time.Second)}
		}
	}
	return j
}

// active lists j in cj's status.active.
func active(j *batchv1.Job) cjOpt {
	return func(cj *batchv1.CronJob) {
		cj.Status.Active = append(cj.Status.Active, corev1.ObjectReference{Kind: "Job", Namespace: "ns", Name: j.Name, UID: j.UID})
	}
}

func TestSchedule(t *testing.T) {
	due := t0.Truncate(time.Minute) // 10:00
	base := newCronJob("*/1 * * * *")
	running := ownedJob(base, due.Add(-time.Minute), "")
	tests := []struct {
		name        string
		cj          *batchv1.CronJob
		jobs        []*batchv1.Job
		now         time.Time
		wantCreate  []string
		wantDelete  []string
		wantActive  int
		wantEvents  []string
		wantRequeue time.Duration
	}{
		{
			name: "due: the job of 10:00 starts",
			cj:   newCronJob("*/1 * * * *", lastScheduled(due.Add(-time.Minute))),
			now:  t0, wantCreate: []string{JobName(base, due)}, wantActive: 1,
			wantEvents: []string{"SuccessfulCreate"}, wantRequeue: 30*time.Second + nextDelta,
		},
		{
			name: "not due yet",
			cj:   newCronJob("0 11 * * *", lastScheduled(due.Add(-23*time.Hour))),
			now:  t0, wantRequeue: 59*time.Minute + 30*time.Second + nextDelta,
		},
		{
			name: "already started",
			cj:   newCronJob("*/1 * * * *", lastScheduled(due)),
			now:  t0, wantRequeue: 30*time.Second + nextDelta,
		},
		{
			name: "Forbid with a job running",
			cj:   newCronJob("*/1 * * * *", lastScheduled(due.Add(-time.Minute)), policy(batchv1.ForbidConcurrent), active(running)),
			jobs: []*batchv1.Job{running}, now: t0, wantActive: 1,
			wantEvents: []string{"JobAlreadyActive"}, wantRequeue: 30*time.Second + nextDelta,
		},
		{
			name: "Allow with a job running",
			cj:   newCronJob("*/1 * * * *", lastScheduled(due.Add(-time.Minute)), active(running)),
			jobs: []*batchv1.Job{running}, now: t0, wantCreate: []string{JobName(base, due)}, wantActive: 2,
			wantEvents: []string{"SuccessfulCreate"}, wantRequeue: 30*time.Second + nextDelta,
		},
		{
			name: "Replace with a job running",
			cj:   newCronJob("*/1 * * * *", lastScheduled(due.Add(-time.Minute)), policy(batchv1.ReplaceConcurrent), active(running)),
			jobs: []*batchv1.Job{running}, now: t0, wantCreate: []string{JobName(base, due)}, wantDelete: []string{running.Name}, wantActive: 1,
			wantEvents: []string{"SuccessfulDelete", "SuccessfulCreate"}, wantRequeue: 30*time.Second + nextDelta,
		},
		{
			name: "suspended",
			cj:   newCronJob("*/1 * * * *", lastScheduled(due.Add(-time.Minute)), func(cj *batchv1.CronJob) { cj.Spec.Suspend = ptr(true) }),
			now:  t0,
		},
		{
			name: "invalid time zone: an event, no job, no error",
			cj:   newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr("Mars/Olympus") }),
			now:  t0, wantEvents: []string{"UnknownTimeZone"},
		},
		{
			name: "unparseable schedule",
			cj:   newCronJob("61 * * * *"),
			now:  t0, wantEvents: []string{"UnparseableSchedule"},
		},
		{
			name: "never fires",
			cj:   newCronJob("0 0 30 2 *"),
			now:  t0, wantEvents: []string{"InvalidSchedule"},
		},
		{
			name: "start missed beyond startingDeadlineSeconds",
			cj: newCronJob("0 * * * *", lastScheduled(due.Add(-time.Hour)), func(cj *batchv1.CronJob) {
				cj.Spec.StartingDeadlineSeconds = ptr(int64(10))
			}),
			now: t0.Add(5 * time.Minute), wantRequeue: 54*time.Minute + 30*time.Second + nextDelta,
		},
		{
			name: "start within startingDeadlineSeconds",
			cj: newCronJob("0 * * * *", lastScheduled(due.Add(-time.Hour)), func(cj *batchv1.CronJob) {
				cj.Spec.StartingDeadlineSeconds = ptr(int64(60))
			}),
			now: t0, wantCreate: []string{JobName(base, due)}, wantActive: 1,
			wantEvents: []string{"SuccessfulCreate"}, wantRequeue: 59*time.Minute + 30*time.Second + nextDelta,
		},
		{
			name: "too many missed start times: warn, start the most recent",
			cj:   newCronJob("*/1 * * * *", func(cj *batchv1.CronJob) { cj.CreationTimestamp = metav1.NewTime(t0.AddDate(-1, 0, 0)) }),
			now:  t0, wantCreate: []string{JobName(base, due)}, wantActive: 1,
			wantEvents: []string{"TooManyMissedTimes", "SuccessfulCreate"}, wantRequeue: 30*time.Second + nextDelta,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []runtime.Object{tt.cj}
			for _, j := range tt.jobs {
				objs = append(objs, j)
			}
			h := newHarness(t, tt.now, objs...)
			d := h.reconcile()
			if got := h.names("create"); !slices.Equal(got, tt.wantCreate) {
				t.Errorf("created %v, want %v", got, tt.wantCreate)
			}
			if got := h.names("delete"); !slices.Equal(got, tt.wantDelete) {
				t.Errorf("deleted %v, want %v", got, tt.wantDelete)
			}
			cj := h.cronJob()
			if len(cj.Status.Active) != tt.wantActive {
				t.Errorf("active %+v, want %d", cj.Status.Active, tt.wantActive)
			}
			if len(tt.wantCreate) > 0 && (cj.Status.LastScheduleTime == nil || !cj.Status.LastScheduleTime.Time.Equal(due)) {
				t.Errorf("lastScheduleTime %v, want %v", cj.Status.LastScheduleTime, due)
			}
			if got := h.events(); !slices.Equal(got, tt.wantEvents) {
				t.Errorf("events %v, want %v", got, tt.wantEvents)
			}
			if d != tt.wantRequeue {
				t.Errorf("requeue after %v, want %v", d, tt.wantRequeue)
			}
		})
	}
}

func TestNewJob(t *testing.T) {
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		tz, want string
	}{
		{"", "2025-03-01T00:00:00Z"},
		{"Asia/Tokyo", "2025-03-01T09:00:00+09:00"},
	}
	for _, tt := range tests {
		cj := newCronJob("0 9 * * *")
		if tt.tz != "" {
			cj.Spec.TimeZone = &tt.tz
		}
		j, err := NewJob(cj, at)
		if err != nil {
			t.Fatal(err)
		}
		if j.Name != fmt.Sprintf("cj-%d", at.Unix()/60) {
			t.Errorf("name %s, want cj-<unix minutes>", j.Name)
		}
		if got := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; got != tt.want {
			t.Errorf("tz %q: scheduled timestamp %q, want %q", tt.tz, got, tt.want)
		}
		if ref := metav1.GetControllerOf(j); ref == nil || ref.Kind != "CronJob" || ref.UID != "cj-uid" {
			t.Errorf("owner %+v, want the cronjob", j.OwnerReferences)
		}
		if j.Labels["app"] != "cj" || j.Spec.Template.Spec.Containers[0].Image != "img" {
			t.Errorf("job %+v does not carry the template", j)
		}
	}
}

func TestTimeZone(t *testing.T) {
	// 09:00 in Tokyo is 00:00 UTC.
	now := time.Date(2025, 3, 1, 0, 0, 30, 0, time.UTC)
	cj := newCronJob("0 9 * * *", lastScheduled(now.Add(-24*time.Hour)), func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr("Asia/Tokyo") })
	h := newHarness(t, now, cj)
	h.reconcile()
	want := JobName(cj, now.Truncate(time.Minute))
	if got := h.names("create"); !slices.Equal(got, []string{want}) {
		t.Fatalf("created %v, want [%s]", got, want)
	}
}

func TestTrackActive(t *testing.T) {
	due := t0.Truncate(time.Minute)
	base := newCronJob("0 0 1 1 *")
	done := ownedJob(base, due.Add(-2*time.Minute), batchv1.JobComplete)
	gone := ownedJob(base, due.Add(-3*time.Minute), "")
	running := ownedJob(base, due.Add(-time.Minute), "")
	cj := newCronJob("0 0 1 1 *", lastScheduled(due.Add(-time.Minute)), active(done), active(gone), active(running))
	h := newHarness(t, t0, cj, done, running)
	h.reconcile()
	got := h.cronJob()
	if len(got.Status.Active) != 1 || got.Status.Active[0].UID != running.UID {
		t.Errorf("active %+v, want only %s", got.Status.Active, running.Name)
	}
	if l := got.Status.LastSuccessfulTime; l == nil || !l.Time.Equal(done.Status.CompletionTime.Time) {
		t.Errorf("lastSuccessfulTime %v, want %v", l, done.Status.CompletionTime)
	}
	if ev := h.events(); !slices.Contains(ev, "SawCompletedJob") || !slices.Contains(ev, "MissingJob") {
		t.Errorf("events %v, want SawCompletedJob and MissingJob", ev)
	}
}

func TestPruneHistory(t *testing.T) {
	due := t0.Truncate(time.Minute)
	cj := newCronJob("0 0 1 1 *", lastScheduled(due))
	objs := []runtime.Object{cj}
	var ok, failed []string
	for i := range 5 {
		j := ownedJob(cj, due.Add(-time.Duration(10+i)*time.Minute), batchv1.JobComplete)
		ok = append(ok, j.Name)
		objs = append(objs, j)
	}
	for i := range 3 {
		j := ownedJob(cj, due.Add(-time.Duration(20+i)*time.Minute), batchv1.JobFailed)
		failed = append(failed, j.Name)
		objs = append(objs, j)
	}
	h := newHarness(t, t0, objs...)
	h.reconcile()
	// The oldest successes (3, 4) beyond 3 and failures (1, 2) beyond 1 go.
	want := []string{ok[3], ok[4], failed[1], failed[2]}
	slices.Sort(want)
	if got := h.names("delete"); !slices.Equal(got, want) {
		t.Fatalf("deleted %v, want %v", got, want)
	}
	for _, a := range h.client.Actions() {
		if d, isDel := a.(k8stesting.DeleteActionImpl); isDel {
			if p := d.DeleteOptions.PropagationPolicy; p == nil || *p != metav1.DeletePropagationBackground {
				t.Errorf("delete %s propagation %v, want Background", d.Name, p)
			}
		}
	}
}

func TestMostRecent(t *testing.T) {
	sched, err := cron.Parse("*/5 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		now        time.Time
		wantRecent time.Time
		wantMissed int64
	}{
		{"none yet", start.Add(4 * time.Minute), time.Time{}, 0},
		{"one", start.Add(6 * time.Minute), start.Add(5 * time.Minute), 1},
		{"several", start.Add(33 * time.Minute), start.Add(30 * time.Minute), 6},
		{"many", start.Add(1000 * time.Minute), start.Add(1000 * time.Minute), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cj := newCronJob("*/5 * * * *", func(cj *batchv1.CronJob) { cj.CreationTimestamp = metav1.NewTime(start) })
			u, err := mostRecent(cj, sched, tt.now, false)
			if err != nil {
				t.Fatal(err)
			}
			var got time.Time
			if u.recent != nil {
				got = *u.recent
			}
			if !got.Equal(tt.wantRecent) || u.missed != tt.wantMissed {
				t.Errorf("recent %v missed %d, want %v and %d", got, u.missed, tt.wantRecent, tt.wantMissed)
			}
		})
	}
}

func TestByStartTies(t *testing.T) {
	cj := newCronJob("*/1 * * * *")
	older, newer := ownedJob(cj, t0, batchv1.JobComplete), ownedJob(cj, t0.Add(time.Minute), batchv1.JobComplete)
	// Started in the same second: the scheduled time still orders them.
	newer.Status.StartTime = older.Status.StartTime
	if byStart(older, newer) >= 0 || byStart(newer, older) <= 0 {
		t.Fatalf("byStart does not order by scheduled time on a start time tie")
	}
}
