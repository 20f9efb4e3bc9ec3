// Package job is the Job controller: it runs a Job's pods to the wanted
// number of completions (optionally one per completion index), counts pod
// successes and failures through the batch.kubernetes.io/job-tracking
// finalizer, delays replacing failed pods with an exponential back-off,
// enforces backoffLimit and activeDeadlineSeconds, honours suspend, and
// deletes finished Jobs after ttlSecondsAfterFinished (the work of
// upstream's separate TTL-after-finished controller).
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/expectations"
	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
	"github.com/skiff-sh/skiff/internal/controller/replicaset"
)

// Kind is the Job kind owner references name.
var Kind = batchv1.SchemeGroupVersion.WithKind("Job")

// Labels, annotations and the finalizer the controller puts on pods.
const (
	TrackingFinalizer     = "batch.kubernetes.io/job-tracking"
	ControllerUIDLabel    = "batch.kubernetes.io/controller-uid"
	LegacyControllerUID   = "controller-uid"
	JobNameLabel          = "batch.kubernetes.io/job-name"
	LegacyJobNameLabel    = "job-name"
	CompletionIndexLabel  = "batch.kubernetes.io/job-completion-index"
	CompletionIndexEnv    = "JOB_COMPLETION_INDEX"
	defaultBackoffLimit   = 6
	defaultWorkers        = 5
	reasonBackoffExceeded = "BackoffLimitExceeded"
	reasonDeadline        = "DeadlineExceeded"
	reasonCompletions     = "CompletionsReached"
)

// Config configures the controller.
type Config struct {
	// Client writes pods and Job status.
	Client kubernetes.Interface
	// Factory provides the Job and pod informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// Workers is the number of Jobs synced at once (default 5).
	Workers int
	// PodFailureBackoff is the delay before a failed pod is replaced,
	// doubled for every further failure since the last success up to
	// MaxPodFailureBackoff; defaults 10s and 10m, as upstream.
	PodFailureBackoff, MaxPodFailureBackoff time.Duration
}

// Upstream's pod failure back-off.
const (
	DefaultPodFailureBackoff    = 10 * time.Second
	DefaultMaxPodFailureBackoff = 10 * time.Minute
)

// Controller is the Job controller.
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	log        *slog.Logger
	clock      clock.Clock
	rec        record.EventRecorder
	exp        *expectations.Store
	loop       *loop.Loop
	jobLister  batchlisters.JobLister
	jobIndexer cache.Indexer
	podIndexer cache.Indexer
	synced     []cache.InformerSynced

	mu sync.Mutex
	// released holds the pods whose tracking finalizer this controller
	// removed and counted, until the pod cache shows it gone, so that a
	// stale pod cache does not count a pod twice.
	released map[types.UID]struct{}
	// backoff holds, per Job key, the failures since the last success
	// and when the last one was counted.
	backoff map[string]failures
}

type failures struct {
	n    int
	last time.Time
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
	if cfg.PodFailureBackoff == 0 {
		cfg.PodFailureBackoff = DefaultPodFailureBackoff
	}
	if cfg.MaxPodFailureBackoff == 0 {
		cfg.MaxPodFailureBackoff = DefaultMaxPodFailureBackoff
	}
	jobInf := cfg.Factory.Batch().V1().Jobs()
	podInf := cfg.Factory.Core().V1().Pods()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder,
		exp:      expectations.New(cfg.Clock, 0),
		released: map[types.UID]struct{}{}, backoff: map[string]failures{},
		jobLister: jobInf.Lister(), jobIndexer: jobInf.Informer().GetIndexer(), podIndexer: podInf.Informer().GetIndexer(),
		synced: []cache.InformerSynced{jobInf.Informer().HasSynced, podInf.Informer().HasSynced}}
	c.loop = loop.New("job", c, cfg.Logger)
	if err := ownership.AddIndex(podInf.Informer()); err != nil {
		return nil, fmt.Errorf("job controller: pods: %w", err)
	}
	if _, err := jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, obj any) { c.loop.Enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.exp.Forget(key)
			}
			c.loop.Enqueue(obj)
		},
	}); err != nil {
		return nil, fmt.Errorf("job controller: job handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if key, ok := c.controllerOf(obj); ok {
				c.exp.CreationObserved(key)
				c.loop.Add(key)
			}
			c.enqueueUncontrolled(obj)
		},
		UpdateFunc: func(_, obj any) {
			c.enqueueUncontrolled(obj)
			if key, ok := c.controllerOf(obj); ok {
				p := obj.(*corev1.Pod)
				if p.DeletionTimestamp != nil {
					c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
				}
				if !slices.Contains(p.Finalizers, TrackingFinalizer) {
					c.forgetReleased(p.UID)
				}
				c.loop.Add(key)
			}
		},
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if key, ok := c.controllerOf(obj); ok {
				p := obj.(*corev1.Pod)
				c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
				c.forgetReleased(p.UID)
				c.loop.Add(key)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("job controller: pod handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("job controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// uncontrolledPrefix marks loop keys of pods that carry the tracking
// finalizer but have no controller (their Job was deleted orphaning
// them): nothing will count them, so they only lose the finalizer.
const uncontrolledPrefix = "uncontrolled-pod:"

func (c *Controller) enqueueUncontrolled(obj any) {
	if p, ok := obj.(*corev1.Pod); ok && metav1.GetControllerOfNoCopy(p) == nil && slices.Contains(p.Finalizers, TrackingFinalizer) {
		c.loop.Add(uncontrolledPrefix + p.Namespace + "/" + p.Name)
	}
}

// releaseUncontrolled removes the tracking finalizer from the pod
// namespace/name if it still has no controller.
func (c *Controller) releaseUncontrolled(ctx context.Context, key string) error {
	obj, ok, err := c.podIndexer.GetByKey(key)
	if err != nil || !ok {
		return err
	}
	p, isPod := obj.(*corev1.Pod)
	if !isPod || metav1.GetControllerOfNoCopy(p) != nil || !slices.Contains(p.Finalizers, TrackingFinalizer) {
		return nil
	}
	return c.removeFinalizer(ctx, p)
}

// controllerOf returns the key of the Job controlling a pod, if any.
func (c *Controller) controllerOf(obj any) (string, bool) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return "", false
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != Kind.Kind || ref.APIVersion != Kind.GroupVersion().String() {
		return "", false
	}
	return pod.Namespace + "/" + ref.Name, true
}

// Reconcile syncs the Job namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	if podKey, ok := strings.CutPrefix(key, uncontrolledPrefix); ok {
		return 0, c.releaseUncontrolled(ctx, podKey)
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.jobLister.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Forget(key)
		c.mu.Lock()
		delete(c.backoff, key)
		c.mu.Unlock()
		return 0, c.releaseOrphans(ctx, ns, name, "")
	}
	if err != nil {
		return 0, err
	}
	job := cached.DeepCopy()
	if err := c.releaseOrphans(ctx, ns, name, job.UID); err != nil {
		return 0, err
	}
	pods, err := c.pods(job)
	if err != nil {
		return 0, err
	}
	now := c.clock.Now()
	if finished(job) || job.DeletionTimestamp != nil {
		// Nothing is counted any more: pods only lose their finalizers.
		return c.cleanupFinished(ctx, key, job, pods, now)
	}

	// Count finished pods: first record them as uncounted, then drop
	// their finalizers, then move them into the counters, so that a crash
	// between the steps neither loses nor double-counts a pod.
	job, err = c.trackFinished(ctx, key, job, pods)
	if err != nil {
		return 0, fmt.Errorf("track finished pods of job %s: %w", key, err)
	}

	active := activePods(pods)
	terminating := countTerminating(pods)
	st := job.Status.DeepCopy()
	st.Active = int32(len(active))
	st.Ready = ptr(countReady(active))
	st.Terminating = ptr(terminating)

	var manageErr error
	var requeue time.Duration
	target := terminalTarget(job)
	if target == nil {
		target = c.failureReason(job, active, now)
		if target != nil {
			setCondition(st, batchv1.JobFailureTarget, target.reason, target.message, now)
		} else if succeededAll(job, len(active)) {
			target = &terminal{typ: batchv1.JobComplete, reason: reasonCompletions, message: "Reached expected number of succeeded pods"}
			setCondition(st, batchv1.JobSuccessCriteriaMet, target.reason, target.message, now)
		}
	}
	suspended := job.Spec.Suspend != nil && *job.Spec.Suspend
	switch {
	case target != nil:
		// Terminating: remove every active pod, then report the outcome
		// once every pod is counted and none is still terminating.
		manageErr = c.deletePods(ctx, key, job, active, len(active))
		unc := job.Status.UncountedTerminatedPods
		if len(active) == 0 && terminating == 0 && len(unc.Succeeded)+len(unc.Failed) == 0 {
			setCondition(st, target.typ, target.reason, target.message, now)
			if target.typ == batchv1.JobComplete {
				st.CompletionTime = ptr(metav1.NewTime(now))
				c.rec.Event(job, corev1.EventTypeNormal, "Completed", "Job completed")
			} else {
				c.rec.Event(job, corev1.EventTypeWarning, target.reason, target.message)
			}
		}
	case suspended:
		manageErr = c.deletePods(ctx, key, job, active, len(active))
		if setCondition(st, batchv1.JobSuspended, "JobSuspended", "Job suspended", now) {
			c.rec.Event(job, corev1.EventTypeNormal, "Suspended", "Job suspended")
		}
	default:
		if cond := findCondition(st.Conditions, batchv1.JobSuspended); cond != nil && cond.Status == corev1.ConditionTrue {
			cond.Status, cond.Reason, cond.Message = corev1.ConditionFalse, "JobResumed", "Job resumed"
			cond.LastTransitionTime, cond.LastProbeTime = metav1.NewTime(now), metav1.NewTime(now)
			st.StartTime = nil // the deadline counts from the resumption
			c.rec.Event(job, corev1.EventTypeNormal, "Resumed", "Job resumed")
		}
		if st.StartTime == nil {
			st.StartTime = ptr(metav1.NewTime(now))
		}
		if c.exp.Satisfied(key) {
			requeue, manageErr = c.manage(ctx, key, job, active, terminating, now)
		}
	}
	if err := c.writeStatus(ctx, job, st); err != nil {
		return 0, errors.Join(manageErr, err)
	}
	if manageErr != nil {
		return 0, manageErr
	}
	if d := job.Spec.ActiveDeadlineSeconds; d != nil && st.StartTime != nil && target == nil && !suspended {
		left := max(st.StartTime.Add(time.Duration(*d)*time.Second).Sub(now), time.Millisecond)
		if requeue == 0 || left < requeue {
			requeue = left
		}
	}
	return requeue, nil
}

// releaseOrphans removes the tracking finalizer from pods in ns whose
// controller is a Job called name other than the one with UID uid (which
// is deleted or was recreated), as upstream's orphan handling does:
// nothing will count them any more.
func (c *Controller) releaseOrphans(ctx context.Context, ns, name string, uid types.UID) error {
	objs, err := c.podIndexer.ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return fmt.Errorf("list pods in %s: %w", ns, err)
	}
	var errs []error
	for _, o := range objs {
		p, ok := o.(*corev1.Pod)
		if !ok || !slices.Contains(p.Finalizers, TrackingFinalizer) {
			continue
		}
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil || ref.Kind != Kind.Kind || ref.APIVersion != Kind.GroupVersion().String() || ref.Name != name || ref.UID == uid {
			continue
		}
		if err := c.removeFinalizer(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// pods are the pods the Job controls.
func (c *Controller) pods(job *batchv1.Job) ([]*corev1.Pod, error) {
	objs, err := c.podIndexer.ByIndex(ownership.IndexName, string(job.UID))
	if err != nil {
		return nil, fmt.Errorf("list pods of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// terminal is the outcome a finishing Job is heading for.
type terminal struct {
	typ             batchv1.JobConditionType
	reason, message string
}

// terminalTarget is the outcome recorded by an interim condition
// (FailureTarget or SuccessCriteriaMet) of an earlier sync.
func terminalTarget(job *batchv1.Job) *terminal {
	if c := findCondition(job.Status.Conditions, batchv1.JobFailureTarget); c != nil && c.Status == corev1.ConditionTrue {
		return &terminal{typ: batchv1.JobFailed, reason: c.Reason, message: c.Message}
	}
	if c := findCondition(job.Status.Conditions, batchv1.JobSuccessCriteriaMet); c != nil && c.Status == corev1.ConditionTrue {
		return &terminal{typ: batchv1.JobComplete, reason: c.Reason, message: c.Message}
	}
	return nil
}

// failureReason reports a Job that exceeded its backoff limit (failed
// pods, or with restartPolicy OnFailure the restarts of its active pods)
// or its deadline (which does not run while the Job is suspended).
func (c *Controller) failureReason(job *batchv1.Job, active []*corev1.Pod, now time.Time) *terminal {
	limit := int32(defaultBackoffLimit)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	if job.Status.Failed > limit || pastBackoffLimitOnFailure(job, active, limit) {
		return &terminal{typ: batchv1.JobFailed, reason: reasonBackoffExceeded, message: "Job has reached the specified backoff limit"}
	}
	suspended := job.Spec.Suspend != nil && *job.Spec.Suspend
	if d := job.Spec.ActiveDeadlineSeconds; d != nil && job.Status.StartTime != nil && !suspended &&
		!now.Before(job.Status.StartTime.Add(time.Duration(*d)*time.Second)) {
		return &terminal{typ: batchv1.JobFailed, reason: reasonDeadline, message: "Job was active longer than specified deadline"}
	}
	return nil
}

// pastBackoffLimitOnFailure counts, for restartPolicy OnFailure, the
// container restarts of the pending and running pods against limit.
func pastBackoffLimitOnFailure(job *batchv1.Job, active []*corev1.Pod, limit int32) bool {
	if job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return false
	}
	var restarts int32
	for _, p := range active {
		if p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending {
			continue
		}
		for _, s := range p.Status.InitContainerStatuses {
			restarts += s.RestartCount
		}
		for _, s := range p.Status.ContainerStatuses {
			restarts += s.RestartCount
		}
	}
	if limit == 0 {
		return restarts > 0
	}
	return restarts >= limit
}

// succeededAll reports whether the Job has its completions.
func succeededAll(job *batchv1.Job, active int) bool {
	if indexed(job) {
		return job.Spec.Completions != nil && int32(len(ParseIndexes(job.Status.CompletedIndexes, *job.Spec.Completions))) >= *job.Spec.Completions
	}
	if job.Spec.Completions == nil {
		return job.Status.Succeeded > 0 && active == 0
	}
	return job.Status.Succeeded >= *job.Spec.Completions
}

func indexed(job *batchv1.Job) bool {
	return job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
}

func finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// cleanupFinished releases the pods of a finished (or deleted) Job and
// deletes a finished Job once its TTL has passed, cascading in the
// foreground as upstream's TTL-after-finished controller does.
func (c *Controller) cleanupFinished(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod, now time.Time) (time.Duration, error) {
	var errs []error
	for _, p := range pods {
		if slices.Contains(p.Finalizers, TrackingFinalizer) {
			if err := c.removeFinalizer(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if !finished(job) || job.DeletionTimestamp != nil {
		return 0, nil
	}
	if err := c.deletePods(ctx, key, job, activePods(pods), len(pods)); err != nil {
		return 0, err
	}
	if job.Spec.TTLSecondsAfterFinished == nil {
		return 0, nil
	}
	var at time.Time
	for _, cond := range job.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			at = cond.LastTransitionTime.Time
		}
	}
	if job.Status.CompletionTime != nil {
		at = job.Status.CompletionTime.Time
	}
	expire := at.Add(time.Duration(*job.Spec.TTLSecondsAfterFinished) * time.Second)
	if now.Before(expire) {
		return expire.Sub(now), nil
	}
	fg := metav1.DeletePropagationForeground
	err := c.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{
		PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &job.UID, ResourceVersion: &job.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("delete expired job %s: %w", key, err)
	}
	c.log.Info("deleted finished job after its TTL", "job", key)
	return 0, nil
}

// trackFinished moves finished pods that still carry the tracking
// finalizer into the Job's counters and removes the finalizer.
func (c *Controller) trackFinished(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod) (*batchv1.Job, error) {
	if job.Status.UncountedTerminatedPods == nil {
		job.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	unc := job.Status.UncountedTerminatedPods
	byUID := map[types.UID]*corev1.Pod{}
	var add []*corev1.Pod
	for _, p := range pods {
		byUID[p.UID] = p
		if !slices.Contains(p.Finalizers, TrackingFinalizer) || slices.Contains(unc.Succeeded, p.UID) || slices.Contains(unc.Failed, p.UID) ||
			c.isReleased(p.UID) {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || podFailed(p, job) {
			add = append(add, p)
		}
	}
	// 1. Record the newly finished pods as uncounted.
	if len(add) > 0 {
		st := job.Status.DeepCopy()
		for _, p := range add {
			if p.Status.Phase == corev1.PodSucceeded {
				st.UncountedTerminatedPods.Succeeded = append(st.UncountedTerminatedPods.Succeeded, p.UID)
			} else {
				st.UncountedTerminatedPods.Failed = append(st.UncountedTerminatedPods.Failed, p.UID)
			}
		}
		updated, err := c.putStatus(ctx, job, *st)
		if err != nil {
			return job, err
		}
		job = updated
		unc = job.Status.UncountedTerminatedPods
	}
	if len(unc.Succeeded)+len(unc.Failed) == 0 {
		return job, nil
	}
	// 2. Drop the finalizers; 3. count the pods whose finalizer is gone.
	var errs []error
	st := job.Status.DeepCopy()
	st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	var released []types.UID
	release := func(uid types.UID) bool {
		p, ok := byUID[uid]
		if !ok || !slices.Contains(p.Finalizers, TrackingFinalizer) {
			return true // gone, or already released
		}
		if err := c.removeFinalizer(ctx, p); err != nil {
			errs = append(errs, err)
			return false
		}
		released = append(released, uid)
		return true
	}
	var succeeded, failed int
	completed := ParseIndexes(st.CompletedIndexes, completionsOf(job))
	for _, uid := range unc.Succeeded {
		if !release(uid) {
			st.UncountedTerminatedPods.Succeeded = append(st.UncountedTerminatedPods.Succeeded, uid)
			continue
		}
		succeeded++
		if !indexed(job) {
			st.Succeeded++
			continue
		}
		if p, ok := byUID[uid]; ok {
			if i, ok := podIndex(p, completionsOf(job)); ok && !slices.Contains(completed, i) {
				completed = append(completed, i)
				st.Succeeded++
			}
		}
	}
	for _, uid := range unc.Failed {
		if !release(uid) {
			st.UncountedTerminatedPods.Failed = append(st.UncountedTerminatedPods.Failed, uid)
			continue
		}
		failed++
		st.Failed++
	}
	if indexed(job) {
		st.CompletedIndexes = FormatIndexes(completed)
	}
	updated, err := c.putStatus(ctx, job, *st)
	if err != nil {
		errs = append(errs, err)
		return job, errors.Join(errs...)
	}
	c.counted(key, released, succeeded, failed)
	return updated, errors.Join(errs...)
}

// counted records pods whose finalizer was removed and counted, and the
// Job's failures since its last success (for the pod failure back-off).
func (c *Controller) counted(key string, released []types.UID, succeeded, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, uid := range released {
		c.released[uid] = struct{}{}
	}
	b := c.backoff[key]
	if succeeded > 0 {
		b = failures{}
	}
	if failed > 0 {
		b = failures{n: b.n + failed, last: c.clock.Now()}
	}
	if b.n == 0 {
		delete(c.backoff, key)
	} else {
		c.backoff[key] = b
	}
}

func (c *Controller) isReleased(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.released[uid]
	return ok
}

func (c *Controller) forgetReleased(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.released, uid)
}

// backoffLeft is how long the creation of replacement pods still waits
// after the Job's last failure: PodFailureBackoff doubled per failure
// since the last success, capped.
func (c *Controller) backoffLeft(key string, now time.Time) time.Duration {
	c.mu.Lock()
	b, ok := c.backoff[key]
	c.mu.Unlock()
	if !ok || b.n == 0 {
		return 0
	}
	d := c.cfg.PodFailureBackoff
	for i := 1; i < b.n && d < c.cfg.MaxPodFailureBackoff; i++ {
		d *= 2
	}
	d = min(d, c.cfg.MaxPodFailureBackoff)
	return max(b.last.Add(d).Sub(now), 0)
}

// podFailed reports a pod that counts as a failure: it failed, or, as
// upstream counts them (orphaned pods may never reach the Failed phase),
// it is being deleted before it succeeded, unless the Job's
// podReplacementPolicy is Failed.
func podFailed(p *corev1.Pod, job *batchv1.Job) bool {
	if p.Status.Phase == corev1.PodFailed {
		return true
	}
	if onlyReplaceFailed(job) {
		return false
	}
	return p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded
}

// onlyReplaceFailed reports podReplacementPolicy Failed (the default
// with a podFailurePolicy): terminating pods are neither replaced nor
// counted until they fail.
func onlyReplaceFailed(job *batchv1.Job) bool {
	if p := job.Spec.PodReplacementPolicy; p != nil {
		return *p == batchv1.Failed
	}
	return job.Spec.PodFailurePolicy != nil
}

// countTerminating counts pods being deleted that have not finished.
func countTerminating(pods []*corev1.Pod) int32 {
	var n int32
	for _, p := range pods {
		if p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			n++
		}
	}
	return n
}

func (c *Controller) removeFinalizer(ctx context.Context, p *corev1.Pod) error {
	var keep []string
	for _, f := range p.Finalizers {
		if f != TrackingFinalizer {
			keep = append(keep, f)
		}
	}
	patch := map[string]any{"metadata": map[string]any{"finalizers": keep, "resourceVersion": p.ResourceVersion}}
	data, err := jsonMarshal(patch)
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, data, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove tracking finalizer of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

func activePods(pods []*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if podstate.Active(p) {
			out = append(out, p)
		}
	}
	return out
}

func countReady(pods []*corev1.Pod) int32 {
	var n int32
	for _, p := range pods {
		if podstate.Ready(p) {
			n++
		}
	}
	return n
}

func completionsOf(job *batchv1.Job) int32 {
	if job.Spec.Completions == nil {
		return 0
	}
	return *job.Spec.Completions
}

// podIndex is the completion index of an Indexed Job's pod.
func podIndex(p *corev1.Pod, completions int32) (int32, bool) {
	v, ok := p.Annotations[CompletionIndexLabel]
	if !ok {
		v, ok = p.Labels[CompletionIndexLabel]
	}
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(v, 10, 32)
	if err != nil || i < 0 || int32(i) >= completions {
		return 0, false
	}
	return int32(i), true
}

// manage creates or deletes pods so that the Job runs as many as its
// parallelism and remaining completions allow; replacements of failed
// pods wait out the failure back-off, whose remainder it returns.
func (c *Controller) manage(ctx context.Context, key string, job *batchv1.Job, active []*corev1.Pod, terminating int32, now time.Time) (time.Duration, error) {
	parallelism := int32(1)
	if job.Spec.Parallelism != nil {
		parallelism = *job.Spec.Parallelism
	}
	want := parallelism
	switch {
	case indexed(job):
		want = min(parallelism, completionsOf(job)-job.Status.Succeeded)
	case job.Spec.Completions == nil:
		// A work queue: after the first success nothing new starts,
		// and what runs keeps running.
		if job.Status.Succeeded > 0 {
			want = min(want, int32(len(active)))
		}
	default:
		want = min(parallelism, *job.Spec.Completions-job.Status.Succeeded)
	}
	want = max(want, 0)
	if indexed(job) {
		// Pods of an index that is done, out of range or run twice go.
		var extra []*corev1.Pod
		active, extra = splitIndexed(job, active)
		if len(extra) > 0 {
			return 0, c.deletePods(ctx, key, job, extra, len(extra))
		}
	}
	if n := int32(len(active)); n > want {
		return 0, c.deletePods(ctx, key, job, active, int(n-want))
	}
	if onlyReplaceFailed(job) {
		want = max(want-terminating, 0)
	}
	if int32(len(active)) >= want {
		return 0, nil
	}
	if left := c.backoffLeft(key, now); left > 0 {
		return left, nil
	}
	var indexes []int32
	if indexed(job) {
		busy := ParseIndexes(job.Status.CompletedIndexes, completionsOf(job))
		for _, p := range active {
			if i, ok := podIndex(p, completionsOf(job)); ok {
				busy = append(busy, i)
			}
		}
		for i := int32(0); i < completionsOf(job) && int32(len(indexes)) < want-int32(len(active)); i++ {
			if !slices.Contains(busy, i) {
				indexes = append(indexes, i)
			}
		}
	} else {
		for range want - int32(len(active)) {
			indexes = append(indexes, -1)
		}
	}
	if len(indexes) == 0 {
		return 0, nil
	}
	c.exp.ExpectCreations(key, len(indexes))
	next := make(chan int32, len(indexes))
	for _, i := range indexes {
		next <- i
	}
	done, err := replicaset.SlowStartBatch(len(indexes), 1, func() error { return c.createPod(ctx, job, <-next) })
	for range len(indexes) - done {
		c.exp.CreationObserved(key)
	}
	return 0, err
}

// splitIndexed splits an Indexed Job's active pods into those it keeps
// (one per pending index, the oldest) and the rest.
func splitIndexed(job *batchv1.Job, active []*corev1.Pod) (keep, extra []*corev1.Pod) {
	done := ParseIndexes(job.Status.CompletedIndexes, completionsOf(job))
	sorted := slices.Clone(active)
	slices.SortStableFunc(sorted, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	seen := map[int32]bool{}
	for _, p := range sorted {
		i, ok := podIndex(p, completionsOf(job))
		if !ok || seen[i] || slices.Contains(done, i) {
			extra = append(extra, p)
			continue
		}
		seen[i] = true
		keep = append(keep, p)
	}
	return keep, extra
}

// NewPod is the pod the controller creates for job; index is its
// completion index, or -1 for a NonIndexed Job.
func NewPod(job *batchv1.Job, index int32) *corev1.Pod {
	t := job.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    job.Name + "-",
			Namespace:       job.Namespace,
			Labels:          map[string]string{},
			Annotations:     map[string]string{},
			Finalizers:      append(t.Finalizers, TrackingFinalizer),
			OwnerReferences: []metav1.OwnerReference{ownership.ControllerRef(job, Kind)},
		},
		Spec: t.Spec,
	}
	for k, v := range t.Labels {
		pod.Labels[k] = v
	}
	for k, v := range t.Annotations {
		pod.Annotations[k] = v
	}
	pod.Labels[ControllerUIDLabel] = string(job.UID)
	pod.Labels[LegacyControllerUID] = string(job.UID)
	pod.Labels[JobNameLabel] = job.Name
	pod.Labels[LegacyJobNameLabel] = job.Name
	if index >= 0 {
		s := strconv.Itoa(int(index))
		pod.GenerateName = job.Name + "-" + s + "-"
		pod.Labels[CompletionIndexLabel] = s
		pod.Annotations[CompletionIndexLabel] = s
		if pod.Spec.Hostname == "" {
			pod.Spec.Hostname = job.Name + "-" + s
		}
		addIndexEnv(pod.Spec.InitContainers)
		addIndexEnv(pod.Spec.Containers)
	}
	if pod.Spec.RestartPolicy == "" {
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	}
	return pod
}

// addIndexEnv gives containers JOB_COMPLETION_INDEX from the pod's
// completion-index annotation, unless they define it themselves.
func addIndexEnv(cs []corev1.Container) {
	for i := range cs {
		if slices.ContainsFunc(cs[i].Env, func(e corev1.EnvVar) bool { return e.Name == CompletionIndexEnv }) {
			continue
		}
		cs[i].Env = append(cs[i].Env, corev1.EnvVar{Name: CompletionIndexEnv, ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + CompletionIndexLabel + "']"}}})
	}
}

func (c *Controller) createPod(ctx context.Context, job *batchv1.Job, index int32) error {
	created, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, NewPod(job, index), metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		c.rec.Eventf(job, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("create pod for job %s/%s: %w", job.Namespace, job.Name, err)
	}
	c.rec.Eventf(job, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", created.Name)
	return nil
}

// deletePods deletes up to n of pods, newest and not-ready first.
func (c *Controller) deletePods(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod, n int) error {
	n = min(n, len(pods))
	if n == 0 {
		return nil
	}
	victims := slices.Clone(pods)
	slices.SortStableFunc(victims, func(a, b *corev1.Pod) int {
		if ra, rb := podstate.Ready(a), podstate.Ready(b); ra != rb {
			if ra {
				return 1
			}
			return -1
		}
		return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
	})
	victims = victims[:n]
	keys := make([]string, len(victims))
	for i, p := range victims {
		keys[i] = p.Namespace + "/" + p.Name
	}
	c.exp.ExpectDeletions(key, keys)
	var errs []error
	for _, p := range victims {
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil {
			c.exp.DeletionObserved(key, p.Namespace+"/"+p.Name)
			if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("delete pod %s: %w", p.Name, err))
			}
			continue
		}
		c.rec.Eventf(job, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
	}
	return errors.Join(errs...)
}

// writeStatus writes st when it differs from the Job's status.
func (c *Controller) writeStatus(ctx context.Context, job *batchv1.Job, st *batchv1.JobStatus) error {
	if statusEqual(&job.Status, st) {
		return nil
	}
	_, err := c.putStatus(ctx, job, *st)
	return err
}

func (c *Controller) putStatus(ctx context.Context, job *batchv1.Job, st batchv1.JobStatus) (*batchv1.Job, error) {
	cur := job.DeepCopy()
	cur.Status = st
	updated, err := c.client.BatchV1().Jobs(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("update status of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	return updated, nil
}

func eventType(t batchv1.JobConditionType) string {
	if t == batchv1.JobFailed {
		return corev1.EventTypeWarning
	}
	return corev1.EventTypeNormal
}

func ptr[T any](v T) *T { return &v }
