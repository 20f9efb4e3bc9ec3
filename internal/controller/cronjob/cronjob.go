// Package cronjob is the CronJob controller: it creates a Job from a
// CronJob's template at each time of its schedule (in spec.timeZone),
// honouring suspend, startingDeadlineSeconds and the concurrency policy,
// keeps status.active, lastScheduleTime and lastSuccessfulTime, and prunes
// finished Jobs beyond the history limits. It requeues each CronJob for
// its next schedule time rather than polling.
package cronjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
)

// Kind is the CronJob kind owner references name.
var Kind = batchv1.SchemeGroupVersion.WithKind("CronJob")

const defaultWorkers = 5

// Config configures the controller.
type Config struct {
	// Client writes Jobs and CronJob status.
	Client kubernetes.Interface
	// Factory provides the CronJob and Job informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock tells the time schedules are compared with; default the real
	// clock. (Requeues still wait in real time.)
	Clock clock.PassiveClock
	// Workers is the number of CronJobs synced at once (default 5).
	Workers int
}

// Controller is the CronJob controller.
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	log        *slog.Logger
	clock      clock.PassiveClock
	rec        record.EventRecorder
	loop       *loop.Loop
	cjLister   batchlisters.CronJobLister
	jobIndexer cache.Indexer
	synced     []cache.InformerSynced
}

// New builds the controller and registers its informer handlers; call it
// before the factory starts.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	if cfg.Workers == 0 {
		cfg.Workers = defaultWorkers
	}
	cjInf := cfg.Factory.Batch().V1().CronJobs()
	jobInf := cfg.Factory.Batch().V1().Jobs()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder,
		cjLister: cjInf.Lister(), jobIndexer: jobInf.Informer().GetIndexer(),
		synced: []cache.InformerSynced{cjInf.Informer().HasSynced, jobInf.Informer().HasSynced}}
	c.loop = loop.New("cronjob", c, cfg.Logger)
	if err := ownership.AddIndex(jobInf.Informer()); err != nil {
		return nil, fmt.Errorf("cronjob controller: jobs: %w", err)
	}
	if _, err := cjInf.Informer().AddEventHandler(c.loop.Handler()); err != nil {
		return nil, fmt.Errorf("cronjob controller: cronjob handler: %w", err)
	}
	enqueueOwner := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOfNoCopy(j); ref != nil && ref.Kind == Kind.Kind && ref.APIVersion == Kind.GroupVersion().String() {
			c.loop.Add(j.Namespace + "/" + ref.Name)
		}
	}
	if _, err := jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueOwner,
		UpdateFunc: func(_, obj any) { enqueueOwner(obj) },
		DeleteFunc: enqueueOwner,
	}); err != nil {
		return nil, fmt.Errorf("cronjob controller: job handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("cronjob controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile syncs the CronJob namespace/name: it brings status.active up
// to date, starts the Job of a due schedule time, prunes the history and
// returns the time until the next schedule time.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.cjLister.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil // its Jobs go with it (garbage collector)
	}
	if err != nil {
		return 0, err
	}
	cj := cached.DeepCopy()
	jobs, err := c.jobs(cj)
	if err != nil {
		return 0, err
	}
	now := c.clock.Now()
	if err := c.trackActive(ctx, cj, jobs); err != nil {
		return 0, err
	}
	requeue, syncErr := c.schedule(ctx, cj, jobs, now)
	cleanErr := c.pruneHistory(ctx, cj, jobs)
	if err := c.writeStatus(ctx, cached, cj); err != nil {
		return 0, errors.Join(syncErr, cleanErr, err)
	}
	if err := errors.Join(syncErr, cleanErr); err != nil {
		return 0, err
	}
	return requeue, nil
}

// jobs are the Jobs the CronJob controls.
func (c *Controller) jobs(cj *batchv1.CronJob) ([]*batchv1.Job, error) {
	objs, err := c.jobIndexer.ByIndex(ownership.IndexName, string(cj.UID))
	if err != nil {
		return nil, fmt.Errorf("list jobs of cronjob %s/%s: %w", cj.Namespace, cj.Name, err)
	}
	out := make([]*batchv1.Job, 0, len(objs))
	for _, o := range objs {
		if j, ok := o.(*batchv1.Job); ok {
			out = append(out, j)
		}
	}
	return out, nil
}

// trackActive drops finished and vanished Jobs from status.active and
// moves lastSuccessfulTime forward, as upstream does.
func (c *Controller) trackActive(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	owned := map[string]bool{}
	for _, j := range jobs {
		owned[string(j.UID)] = true
		active := inActive(cj, j)
		done, cond := finished(j)
		switch {
		case !active && !done:
			c.rec.Eventf(cj, corev1.EventTypeWarning, "UnexpectedJob", "Saw a job that the controller did not create or forgot: %s", j.Name)
		case active && done:
			removeActive(cj, string(j.UID))
			c.rec.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, condition: %v", j.Name, cond)
		}
		if done && cond == batchv1.JobComplete && j.Status.CompletionTime != nil {
			if last := cj.Status.LastSuccessfulTime; last == nil || j.Status.CompletionTime.After(last.Time) {
				cj.Status.LastSuccessfulTime = j.Status.CompletionTime.DeepCopy()
			}
		}
	}
	for _, ref := range slices.Clone(cj.Status.Active) {
		if owned[string(ref.UID)] {
			continue
		}
		// The cache may lag behind a Job just created: ask the API server.
		_, err := c.client.BatchV1().Jobs(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			c.rec.Eventf(cj, corev1.EventTypeNormal, "MissingJob", "Active job went missing: %v", ref.Name)
			removeActive(cj, string(ref.UID))
		case err != nil:
			return fmt.Errorf("get job %s/%s: %w", ref.Namespace, ref.Name, err)
		}
	}
	return nil
}

// schedule starts the Job of the most recent unmet schedule time, if it
// is due, and returns the time until the next one (0: none, or the spec
// needs fixing first).
func (c *Controller) schedule(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job, now time.Time) (time.Duration, error) {
	if cj.DeletionTimestamp != nil {
		return 0, nil
	}
	if tz := cj.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil {
			c.rec.Eventf(cj, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *tz, err)
			return 0, nil
		}
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return 0, nil
	}
	sched, err := parseSchedule(cj)
	if err != nil {
		c.rec.Eventf(cj, corev1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return 0, nil
	}
	u, err := mostRecent(cj, sched, now, true)
	if err != nil {
		c.rec.Eventf(cj, corev1.EventTypeWarning, "InvalidSchedule", "invalid schedule: %s : %s", cj.Spec.Schedule, err)
		return 0, nil
	}
	next := nextRequeue(cj, sched, now)
	if u.recent == nil {
		return next, nil
	}
	at := *u.recent
	if u.missed > tooManyMissed {
		c.rec.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes",
			"too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
		c.log.Info("too many missed start times", "cronjob", cj.Namespace+"/"+cj.Name, "missed", u.missed)
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && at.Add(time.Duration(*d)*time.Second).Before(now) {
		c.rec.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", at.UTC().Format(time.RFC1123Z))
		return next, nil
	}
	name := JobName(cj, at)
	if slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.Name == name }) ||
		(cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(at)) {
		return next, nil // already started
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(cj.Status.Active) > 0 {
			c.rec.Event(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
			return next, nil
		}
	case batchv1.ReplaceConcurrent:
		for _, ref := range slices.Clone(cj.Status.Active) {
			if err := c.deleteJob(ctx, cj, ref.Name); err != nil {
				return 0, fmt.Errorf("replace job %s/%s: %w", ref.Namespace, ref.Name, err)
			}
			removeActive(cj, string(ref.UID))
		}
	}
	job, err := NewJob(cj, at)
	if err != nil {
		return 0, err
	}
	created, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, job, metav1.CreateOptions{})
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return 0, nil
	case apierrors.IsAlreadyExists(err):
		// Created before, but the status update was lost: adopt it if
		// it is ours.
		existing, gerr := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, name, metav1.GetOptions{})
		if gerr != nil {
			return 0, fmt.Errorf("get existing job %s/%s: %w", cj.Namespace, name, gerr)
		}
		if !metav1.IsControlledBy(existing, cj) {
			return next, nil
		}
		created = existing
	case err != nil:
		c.rec.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return 0, fmt.Errorf("create job %s/%s: %w", cj.Namespace, name, err)
	default:
		c.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", created.Name)
	}
	cj.Status.Active = append(cj.Status.Active, corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1",
		Namespace: created.Namespace, Name: created.Name, UID: created.UID, ResourceVersion: created.ResourceVersion})
	cj.Status.LastScheduleTime = &metav1.Time{Time: at}
	return next, nil
}

// pruneHistory deletes the oldest finished Jobs beyond the successful and
// failed history limits.
func (c *Controller) pruneHistory(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	var ok, failed []*batchv1.Job
	for _, j := range jobs {
		switch _, cond := finished(j); cond {
		case batchv1.JobComplete:
			ok = append(ok, j)
		case batchv1.JobFailed:
			failed = append(failed, j)
		}
	}
	var errs []error
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{ok, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if set.limit == nil || len(set.jobs) <= int(*set.limit) {
			continue
		}
		slices.SortStableFunc(set.jobs, byStart)
		for _, j := range set.jobs[:len(set.jobs)-int(*set.limit)] {
			if j.DeletionTimestamp != nil {
				continue
			}
			if err := c.deleteJob(ctx, cj, j.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			removeActive(cj, string(j.UID))
		}
	}
	return errors.Join(errs...)
}

// byStart orders Jobs oldest first: by the scheduled time this
// controller annotated them with (upstream orders by start time only,
// which ties for Jobs started within one second), else by start time,
// Jobs never started first, then by creation.
func byStart(a, b *batchv1.Job) int {
	ta, aok := scheduledAt(a)
	tb, bok := scheduledAt(b)
	switch {
	case aok && bok && !ta.Equal(tb):
		return ta.Compare(tb)
	case a.Status.StartTime == nil && b.Status.StartTime != nil:
		return -1
	case a.Status.StartTime != nil && b.Status.StartTime == nil:
		return 1
	case a.Status.StartTime != nil && !a.Status.StartTime.Equal(b.Status.StartTime):
		return a.Status.StartTime.Compare(b.Status.StartTime.Time)
	}
	return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
}

func scheduledAt(j *batchv1.Job) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339, j.Annotations[batchv1.CronJobScheduledTimestampAnnotation])
	return t, err == nil
}

// deleteJob deletes a Job of cj, its pods in the background.
func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, name string) error {
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(cj.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		c.rec.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("delete job %s/%s: %w", cj.Namespace, name, err)
	}
	c.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", name)
	return nil
}

// writeStatus writes cj's status when it differs from the cached one.
func (c *Controller) writeStatus(ctx context.Context, cached, cj *batchv1.CronJob) error {
	if equality.Semantic.DeepEqual(cached.Status, cj.Status) {
		return nil
	}
	if _, err := c.client.BatchV1().CronJobs(cj.Namespace).UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of cronjob %s/%s: %w", cj.Namespace, cj.Name, err)
	}
	return nil
}

// JobName is the name of cj's Job for schedule time at, as upstream
// names it: the CronJob's name and the time in minutes since the epoch,
// so that one schedule time never gets two Jobs.
func JobName(cj *batchv1.CronJob, at time.Time) string {
	return cj.Name + "-" + strconv.FormatInt(at.Unix()/60, 10)
}

// NewJob is the Job cj starts for schedule time at: its job template,
// owned by cj, annotated with the scheduled time (RFC 3339, in the
// CronJob's time zone).
func NewJob(cj *batchv1.CronJob, at time.Time) (*batchv1.Job, error) {
	loc := time.UTC
	if tz := cj.Spec.TimeZone; tz != nil {
		var err error
		if loc, err = time.LoadLocation(*tz); err != nil {
			return nil, fmt.Errorf("time zone %q: %w", *tz, err)
		}
	}
	t := cj.Spec.JobTemplate.DeepCopy()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            JobName(cj, at),
			Namespace:       cj.Namespace,
			Labels:          map[string]string{},
			Annotations:     map[string]string{},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, Kind)},
		},
		Spec: t.Spec,
	}
	for k, v := range t.Labels {
		job.Labels[k] = v
	}
	for k, v := range t.Annotations {
		job.Annotations[k] = v
	}
	job.Annotations[batchv1.CronJobScheduledTimestampAnnotation] = at.In(loc).Format(time.RFC3339)
	return job, nil
}

// finished reports whether a Job is Complete or Failed, and which.
func finished(j *batchv1.Job) (bool, batchv1.JobConditionType) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true, c.Type
		}
	}
	return false, ""
}

func inActive(cj *batchv1.CronJob, j *batchv1.Job) bool {
	return slices.ContainsFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return r.UID == j.UID })
}

func removeActive(cj *batchv1.CronJob, uid string) {
	cj.Status.Active = slices.DeleteFunc(cj.Status.Active, func(r corev1.ObjectReference) bool { return string(r.UID) == uid })
}
