package job

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
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
	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	t      *testing.T
	client *fake.Clientset
	ctrl   *Controller
	clock  *clocktesting.FakeClock
	names  atomic.Int32
}

func newHarness(t *testing.T, objs ...runtime.Object) *harness {
	t.Helper()
	h := &harness{t: t, client: fake.NewClientset(objs...), clock: clocktesting.NewFakeClock(t0)}
	h.client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if p.Name == "" {
			p.Name = fmt.Sprintf("%s%05d", p.GenerateName, h.names.Add(1))
			p.UID = types.UID("uid-" + p.Name)
		}
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(h.client, 0)
	c, err := New(Config{Client: h.client, Factory: f, Clock: h.clock})
	if err != nil {
		t.Fatal(err)
	}
	h.ctrl = c
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Pod:
			err = c.podIndexer.Add(o)
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
	d, err := h.ctrl.Reconcile(context.Background(), "ns/pi")
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

func (h *harness) actions(verb, resource string) []k8stesting.Action {
	var out []k8stesting.Action
	for _, a := range h.client.Actions() {
		if a.GetVerb() == verb && a.GetResource().Resource == resource && a.GetSubresource() == "" {
			out = append(out, a)
		}
	}
	return out
}

func (h *harness) job() *batchv1.Job {
	h.t.Helper()
	j, err := h.client.BatchV1().Jobs("ns").Get(context.Background(), "pi", metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) created() []*corev1.Pod {
	var out []*corev1.Pod
	for _, a := range h.actions("create", "pods") {
		out = append(out, a.(k8stesting.CreateAction).GetObject().(*corev1.Pod))
	}
	return out
}

type jobOpt func(*batchv1.Job)

func newJob(opts ...jobOpt) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "ns", UID: "job-uid", Generation: 1},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "pi", ControllerUIDLabel: "job-uid"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "img"}}}}},
	}
	for _, o := range opts {
		o(j)
	}
	return j
}

func completions(n int32) jobOpt { return func(j *batchv1.Job) { j.Spec.Completions = &n } }
func parallelism(n int32) jobOpt { return func(j *batchv1.Job) { j.Spec.Parallelism = &n } }
func backoff(n int32) jobOpt     { return func(j *batchv1.Job) { j.Spec.BackoffLimit = &n } }
func indexedMode(j *batchv1.Job) { m := batchv1.IndexedCompletion; j.Spec.CompletionMode = &m }
func started(at time.Time) jobOpt {
	return func(j *batchv1.Job) { j.Status.StartTime = &metav1.Time{Time: at} }
}
func status(f func(*batchv1.JobStatus)) jobOpt { return func(j *batchv1.Job) { f(&j.Status) } }

type podOpt func(*corev1.Pod)

func newPod(name string, job *batchv1.Job, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
		Labels: map[string]string{"app": "pi"}, Finalizers: []string{TrackingFinalizer}, ResourceVersion: "1",
		CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
		OwnerReferences:   []metav1.OwnerReference{*metav1.NewControllerRef(job, Kind)}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }
func index(i string) podOpt {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{CompletionIndexLabel: i} }
}
func ready(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
}
func untracked(p *corev1.Pod) { p.Finalizers = nil }
func deleting(p *corev1.Pod)  { p.DeletionTimestamp = &metav1.Time{Time: t0} }

func cond(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	return findCondition(j.Status.Conditions, t)
}

func conditionTypes(j *batchv1.Job) []batchv1.JobConditionType {
	var out []batchv1.JobConditionType
	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			out = append(out, c.Type)
		}
	}
	return out
}

func TestNewPods(t *testing.T) {
	h := newHarness(t, newJob(completions(5), parallelism(2)))
	h.reconcile()
	pods := h.created()
	if len(pods) != 2 {
		t.Fatalf("created %d pods, want parallelism 2", len(pods))
	}
	for _, p := range pods {
		if p.GenerateName != "pi-" {
			t.Errorf("generateName %q, want pi-", p.GenerateName)
		}
		want := map[string]string{"app": "pi", ControllerUIDLabel: "job-uid", LegacyControllerUID: "job-uid", JobNameLabel: "pi", LegacyJobNameLabel: "pi"}
		for k, v := range want {
			if p.Labels[k] != v {
				t.Errorf("label %s=%q, want %q", k, p.Labels[k], v)
			}
		}
		if !slices.Contains(p.Finalizers, TrackingFinalizer) {
			t.Errorf("finalizers %v, want %s", p.Finalizers, TrackingFinalizer)
		}
		if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != "job-uid" || ref.Kind != "Job" || ref.APIVersion != "batch/v1" {
			t.Errorf("owner %+v, want the job as controller", p.OwnerReferences)
		}
	}
	j := h.job()
	if j.Status.StartTime == nil || !j.Status.StartTime.Time.Equal(t0) {
		t.Errorf("startTime %v, want %v", j.Status.StartTime, t0)
	}
	// Stale cache: expectations stop a second round of creations.
	h.reconcile()
	if n := len(h.created()); n != 0 {
		t.Fatalf("resync with a stale cache created %d pods, want 0", n)
	}
}

func TestIndexedPods(t *testing.T) {
	job := newJob(completions(4), parallelism(3), indexedMode, started(t0),
		status(func(s *batchv1.JobStatus) { s.CompletedIndexes = "0"; s.Succeeded = 1 }))
	h := newHarness(t, job, newPod("pi-2-abcde", job, index("2")))
	h.reconcile()
	var got []string
	for _, p := range h.created() {
		i := p.Annotations[CompletionIndexLabel]
		got = append(got, i)
		if p.Labels[CompletionIndexLabel] != i {
			t.Errorf("index label %q, annotation %q: want equal", p.Labels[CompletionIndexLabel], i)
		}
		if p.Spec.Hostname != "pi-"+i || p.GenerateName != "pi-"+i+"-" {
			t.Errorf("hostname %q generateName %q, want pi-%s and pi-%s-", p.Spec.Hostname, p.GenerateName, i, i)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"1", "3"}) {
		t.Fatalf("created indexes %v, want [1 3] (0 done, 2 running)", got)
	}
}

func TestCounting(t *testing.T) {
	tests := []struct {
		name          string
		job           *batchv1.Job
		pods          func(*batchv1.Job) []*corev1.Pod
		wantSucceeded int32
		wantFailed    int32
		wantActive    int32
		wantReady     int32
		wantIndexes   string
		wantConds     []batchv1.JobConditionType
		wantCreates   int
		wantDeletes   int
		wantPatches   int

		wantTerminating int32
	}{
		{
			name: "successes counted and complete",
			job:  newJob(completions(2), parallelism(2), started(t0.Add(-time.Minute))),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, phase(corev1.PodSucceeded)), newPod("b", j, phase(corev1.PodSucceeded))}
			},
			wantSucceeded: 2, wantConds: []batchv1.JobConditionType{batchv1.JobSuccessCriteriaMet, batchv1.JobComplete}, wantPatches: 2,
		},
		{
			name: "already counted pods are not counted twice",
			job: newJob(completions(3), parallelism(1), started(t0),
				status(func(s *batchv1.JobStatus) { s.Succeeded = 1 })),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, phase(corev1.PodSucceeded), untracked), newPod("b", j, ready)}
			},
			wantSucceeded: 1, wantActive: 1, wantReady: 1,
		},
		{
			name: "failure below backoff limit is replaced",
			job:  newJob(completions(1), backoff(2), started(t0)),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, phase(corev1.PodFailed))}
			},
			wantFailed: 1, wantCreates: 0, wantPatches: 1, // the replacement waits out the back-off
		},
		{
			name: "a pod being deleted counts as failed and holds the Failed condition back",
			job:  newJob(completions(2), parallelism(2), backoff(0), started(t0)),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, deleting), newPod("b", j, deleting)}
			},
			wantFailed: 2, wantConds: []batchv1.JobConditionType{batchv1.JobFailureTarget}, wantPatches: 2, wantTerminating: 2,
		},
		{
			name: "restartPolicy OnFailure: container restarts count against the backoff limit",
			job: newJob(backoff(2), started(t0), func(j *batchv1.Job) {
				j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
			}),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, func(p *corev1.Pod) {
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: 2}}
				})}
			},
			wantActive: 1, wantConds: []batchv1.JobConditionType{batchv1.JobFailureTarget}, wantDeletes: 1,
		},
		{
			name: "indexed: pods of a completed index or a duplicate index are deleted",
			job: newJob(completions(3), parallelism(3), indexedMode, started(t0), status(func(s *batchv1.JobStatus) {
				s.CompletedIndexes, s.Succeeded = "0", 1
			})),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, index("0")), newPod("b", j, index("1")),
					newPod("c", j, index("1"), func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0) })}
			},
			wantSucceeded: 1, wantActive: 3, wantIndexes: "0", wantDeletes: 2,
		},
		{
			name: "work queue (no completions): after a success the others keep running, none starts",
			job:  newJob(parallelism(3), started(t0)),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, phase(corev1.PodSucceeded)), newPod("b", j)}
			},
			wantSucceeded: 1, wantActive: 1, wantPatches: 1,
		},
		{
			name: "work queue: complete once the last pod is done",
			job:  newJob(parallelism(3), started(t0), status(func(s *batchv1.JobStatus) { s.Succeeded = 1 })),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, phase(corev1.PodSucceeded), untracked), newPod("b", j, phase(corev1.PodSucceeded))}
			},
			wantSucceeded: 2, wantConds: []batchv1.JobConditionType{batchv1.JobSuccessCriteriaMet, batchv1.JobComplete}, wantPatches: 1,
		},
		{
			name: "suspended job: the deadline does not run",
			job: newJob(started(t0.Add(-time.Hour)), func(j *batchv1.Job) {
				j.Spec.Suspend = ptr(true)
				j.Spec.ActiveDeadlineSeconds = ptr(int64(10))
			}),
			pods:      func(j *batchv1.Job) []*corev1.Pod { return nil },
			wantConds: []batchv1.JobConditionType{batchv1.JobSuspended},
		},
		{
			name: "backoff limit exceeded fails the job and deletes active pods",
			job:  newJob(completions(3), parallelism(2), backoff(1), started(t0)),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, phase(corev1.PodFailed)), newPod("b", j, phase(corev1.PodFailed)), newPod("c", j)}
			},
			wantFailed: 2, wantActive: 1, wantConds: []batchv1.JobConditionType{batchv1.JobFailureTarget}, wantDeletes: 1, wantPatches: 2,
		},
		{
			name: "failure target becomes failed once no pod is left",
			job: newJob(completions(3), backoff(1), started(t0), status(func(s *batchv1.JobStatus) {
				s.Failed = 2
				s.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: reasonBackoffExceeded}}
			})),
			pods:       func(j *batchv1.Job) []*corev1.Pod { return nil },
			wantFailed: 2, wantConds: []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobFailed},
		},
		{
			name: "deadline exceeded",
			job: newJob(completions(1), started(t0.Add(-2*time.Minute)), func(j *batchv1.Job) {
				j.Spec.ActiveDeadlineSeconds = ptr(int64(60))
			}),
			pods:        func(j *batchv1.Job) []*corev1.Pod { return nil },
			wantConds:   []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobFailed},
			wantCreates: 0,
		},
		{
			name: "indexed: a second success of one index counts once",
			job: newJob(completions(3), parallelism(3), indexedMode, started(t0), status(func(s *batchv1.JobStatus) {
				s.CompletedIndexes, s.Succeeded = "1", 1
			})),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j, index("0"), phase(corev1.PodSucceeded)),
					newPod("b", j, index("1"), phase(corev1.PodSucceeded)), newPod("c", j, index("2"))}
			},
			wantSucceeded: 2, wantActive: 1, wantIndexes: "0-1", wantPatches: 2,
		},
		{
			name: "suspended job deletes its pods",
			job:  newJob(completions(2), parallelism(2), started(t0), func(j *batchv1.Job) { j.Spec.Suspend = ptr(true) }),
			pods: func(j *batchv1.Job) []*corev1.Pod {
				return []*corev1.Pod{newPod("a", j), newPod("b", j)}
			},
			wantActive: 2, wantConds: []batchv1.JobConditionType{batchv1.JobSuspended}, wantDeletes: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []runtime.Object{tt.job}
			for _, p := range tt.pods(tt.job) {
				objs = append(objs, p)
			}
			h := newHarness(t, objs...)
			h.reconcile()
			j := h.job()
			if j.Status.Succeeded != tt.wantSucceeded || j.Status.Failed != tt.wantFailed || j.Status.Active != tt.wantActive {
				t.Errorf("succeeded/failed/active %d/%d/%d, want %d/%d/%d", j.Status.Succeeded, j.Status.Failed, j.Status.Active,
					tt.wantSucceeded, tt.wantFailed, tt.wantActive)
			}
			if j.Status.Terminating == nil || *j.Status.Terminating != tt.wantTerminating {
				t.Errorf("terminating %v, want %d", j.Status.Terminating, tt.wantTerminating)
			}
			if j.Status.Ready == nil || *j.Status.Ready != tt.wantReady {
				t.Errorf("ready %v, want %d", j.Status.Ready, tt.wantReady)
			}
			if j.Status.CompletedIndexes != tt.wantIndexes {
				t.Errorf("completedIndexes %q, want %q", j.Status.CompletedIndexes, tt.wantIndexes)
			}
			if u := j.Status.UncountedTerminatedPods; u != nil && len(u.Succeeded)+len(u.Failed) > 0 {
				t.Errorf("uncounted pods left: %+v", u)
			}
			if got := conditionTypes(j); !slices.Equal(got, tt.wantConds) {
				t.Errorf("conditions %v, want %v", got, tt.wantConds)
			}
			if slices.Contains(tt.wantConds, batchv1.JobComplete) != (j.Status.CompletionTime != nil) {
				t.Errorf("completionTime %v with conditions %v", j.Status.CompletionTime, tt.wantConds)
			}
			if n := len(h.created()); n != tt.wantCreates {
				t.Errorf("created %d pods, want %d", n, tt.wantCreates)
			}
			if n := len(h.actions("delete", "pods")); n != tt.wantDeletes {
				t.Errorf("deleted %d pods, want %d", n, tt.wantDeletes)
			}
			if n := len(h.actions("patch", "pods")); n != tt.wantPatches {
				t.Errorf("patched (finalizer removal) %d pods, want %d", n, tt.wantPatches)
			}
		})
	}
}

func TestFailedConditionReasons(t *testing.T) {
	tests := []struct {
		name, reason string
		job          *batchv1.Job
	}{
		{"backoff", reasonBackoffExceeded, newJob(backoff(0), started(t0), status(func(s *batchv1.JobStatus) { s.Failed = 1 }))},
		{"deadline", reasonDeadline, newJob(started(t0.Add(-time.Hour)), func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptr(int64(10)) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.job)
			h.reconcile()
			c := cond(h.job(), batchv1.JobFailed)
			if c == nil || c.Reason != tt.reason || c.Status != corev1.ConditionTrue {
				t.Fatalf("Failed condition %+v, want reason %s", c, tt.reason)
			}
		})
	}
}

func TestDeadlineRequeue(t *testing.T) {
	h := newHarness(t, newJob(started(t0.Add(-30*time.Second)), func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptr(int64(60)) }))
	if d := h.reconcile(); d != 30*time.Second {
		t.Fatalf("requeue after %v, want 30s (the deadline)", d)
	}
}

func TestTTLAfterFinished(t *testing.T) {
	finishedAt := t0.Add(-30 * time.Second)
	mk := func(ttl int32) *batchv1.Job {
		return newJob(func(j *batchv1.Job) { j.Spec.TTLSecondsAfterFinished = &ttl }, status(func(s *batchv1.JobStatus) {
			s.CompletionTime = &metav1.Time{Time: finishedAt}
			s.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(finishedAt)}}
		}))
	}
	tests := []struct {
		name        string
		ttl         int32
		wantDelete  bool
		wantRequeue time.Duration
	}{
		{"expired", 10, true, 0},
		{"not yet", 100, false, 70 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, mk(tt.ttl))
			d := h.reconcile()
			dels := h.actions("delete", "jobs")
			if got := len(dels) == 1; got != tt.wantDelete {
				t.Errorf("deleted job %v, want %v", got, tt.wantDelete)
			}
			for _, a := range dels {
				o := a.(k8stesting.DeleteActionImpl).DeleteOptions
				if o.PropagationPolicy == nil || *o.PropagationPolicy != metav1.DeletePropagationForeground {
					t.Errorf("propagation %v, want Foreground", o.PropagationPolicy)
				}
			}
			if d != tt.wantRequeue {
				t.Errorf("requeue %v, want %v", d, tt.wantRequeue)
			}
		})
	}
}

func TestIndexes(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{{"", ""}, {"0", "0"}, {"3,0-1,2", "0-3"}, {"1,3-4,6,9", "1,3-4,6"}, {"x,2", "2"}}
	for _, tt := range tests {
		if got := FormatIndexes(ParseIndexes(tt.in, 8)); got != tt.want {
			t.Errorf("format(parse(%q)) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFailureBackoff(t *testing.T) {
	job := newJob(completions(1), backoff(5), started(t0))
	h := newHarness(t, job, newPod("a", job, phase(corev1.PodFailed)))
	if d := h.reconcile(); d != DefaultPodFailureBackoff {
		t.Fatalf("requeue after %v, want the back-off %v", d, DefaultPodFailureBackoff)
	}
	if n := len(h.created()); n != 0 {
		t.Fatalf("created %d pods during the back-off", n)
	}
	// The caches catch up; the back-off runs out.
	if err := h.ctrl.jobIndexer.Update(h.job()); err != nil {
		t.Fatal(err)
	}
	p, err := h.client.CoreV1().Pods("ns").Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ctrl.podIndexer.Update(p); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(DefaultPodFailureBackoff)
	h.reconcile()
	if n := len(h.created()); n != 1 {
		t.Fatalf("created %d pods after the back-off, want 1", n)
	}
	if f := h.job().Status.Failed; f != 1 {
		t.Fatalf("failed %d, want 1", f)
	}
}

func TestStalePodCacheCountsOnce(t *testing.T) {
	job := newJob(completions(2), started(t0))
	pod := newPod("a", job, phase(corev1.PodSucceeded))
	h := newHarness(t, job, pod)
	h.reconcile()
	// The Job cache catches up, the pod cache does not: the pod still
	// shows the finalizer.
	if err := h.ctrl.jobIndexer.Update(h.job()); err != nil {
		t.Fatal(err)
	}
	h.reconcile()
	if s := h.job().Status.Succeeded; s != 1 {
		t.Fatalf("succeeded %d, want 1", s)
	}
	if n := len(h.actions("patch", "pods")); n != 0 {
		t.Fatalf("patched the released pod again (%d patches)", n)
	}
}

func TestOrphanFinalizersReleased(t *testing.T) {
	gone := newJob(func(j *batchv1.Job) { j.UID = "old-uid" })
	tests := []struct {
		name string
		objs []runtime.Object
	}{
		{"job deleted", []runtime.Object{newPod("a", gone)}},
		{"job recreated under the same name", []runtime.Object{newJob(started(t0)), newPod("a", gone)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.objs...)
			h.reconcile()
			p, err := h.client.CoreV1().Pods("ns").Get(context.Background(), "a", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(p.Finalizers, TrackingFinalizer) {
				t.Fatalf("finalizers %v: tracking finalizer kept on an orphan", p.Finalizers)
			}
		})
	}
}

func TestUncontrolledPodReleased(t *testing.T) {
	p := newPod("a", newJob(), func(p *corev1.Pod) { p.OwnerReferences = nil })
	h := newHarness(t, p)
	if _, err := h.ctrl.Reconcile(context.Background(), uncontrolledPrefix+"ns/a"); err != nil {
		t.Fatal(err)
	}
	got, err := h.client.CoreV1().Pods("ns").Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got.Finalizers, TrackingFinalizer) {
		t.Fatalf("finalizers %v: tracking finalizer kept on a pod without a controller", got.Finalizers)
	}
}

func TestIndexEnv(t *testing.T) {
	job := newJob(completions(2), indexedMode)
	p := NewPod(job, 1)
	env := p.Spec.Containers[0].Env
	if len(env) != 1 || env[0].Name != CompletionIndexEnv || env[0].ValueFrom == nil ||
		env[0].ValueFrom.FieldRef.FieldPath != "metadata.annotations['"+CompletionIndexLabel+"']" {
		t.Fatalf("env %+v, want %s from the completion-index annotation", env, CompletionIndexEnv)
	}
	if env := NewPod(newJob(), -1).Spec.Containers[0].Env; len(env) != 0 {
		t.Fatalf("NonIndexed pod env %+v, want none", env)
	}
}
