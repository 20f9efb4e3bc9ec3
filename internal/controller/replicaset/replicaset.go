// Package replicaset is the ReplicaSet controller: it creates and deletes
// pods so that each ReplicaSet has spec.replicas active pods that it
// controls, adopting matching orphans and releasing pods that no longer
// match, and it reports the pods' readiness in the ReplicaSet's status.
package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/expectations"
	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

// Kind is the ReplicaSet kind owner references name.
var Kind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// Defaults of the controller.
const (
	// DefaultBurstReplicas bounds the pods created or deleted in one sync.
	DefaultBurstReplicas = 500
	// statusRetries is how often a conflicting status write is retried
	// with a fresh read within one sync.
	statusRetries = 1
)

// Config configures the controller.
type Config struct {
	// Client writes pods and ReplicaSet status.
	Client kubernetes.Interface
	// Factory provides the ReplicaSet and pod informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// Workers is the number of ReplicaSets synced at once (default 5).
	Workers int
	// BurstReplicas bounds creations or deletions per sync (default 500).
	BurstReplicas int
}

// Controller is the ReplicaSet controller.
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	log        *slog.Logger
	clock      clock.Clock
	rec        record.EventRecorder
	exp        *expectations.Store
	loop       *loop.Loop
	rsLister   appslisters.ReplicaSetLister
	rsIndexer  cache.Indexer
	podIndexer cache.Indexer
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
		cfg.Workers = 5
	}
	if cfg.BurstReplicas == 0 {
		cfg.BurstReplicas = DefaultBurstReplicas
	}
	rsInf := cfg.Factory.Apps().V1().ReplicaSets()
	podInf := cfg.Factory.Core().V1().Pods()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder,
		exp:      expectations.New(cfg.Clock, 0),
		rsLister: rsInf.Lister(), rsIndexer: rsInf.Informer().GetIndexer(), podIndexer: podInf.Informer().GetIndexer(),
		synced: []cache.InformerSynced{rsInf.Informer().HasSynced, podInf.Informer().HasSynced}}
	c.loop = loop.New("replicaset", c, cfg.Logger)
	if err := ownership.AddIndex(podInf.Informer()); err != nil {
		return nil, fmt.Errorf("replicaset controller: pods: %w", err)
	}
	if err := ownership.AddIndex(rsInf.Informer()); err != nil {
		return nil, fmt.Errorf("replicaset controller: replicasets: %w", err)
	}
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, obj any) { c.loop.Enqueue(obj) },
		DeleteFunc: c.onRSDelete,
	}); err != nil {
		return nil, fmt.Errorf("replicaset controller: replicaset handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.onPodAdd, UpdateFunc: c.onPodUpdate, DeleteFunc: c.onPodDelete,
	}); err != nil {
		return nil, fmt.Errorf("replicaset controller: pod handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("replicaset controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

func (c *Controller) onRSDelete(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.exp.Forget(key)
	}
	c.loop.Enqueue(obj)
}

// controllerOf returns the key of the ReplicaSet controlling pod, if any.
func (c *Controller) controllerOf(pod *corev1.Pod) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != Kind.Kind || ref.APIVersion != Kind.GroupVersion().String() {
		return "", false
	}
	rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return "", false
	}
	return pod.Namespace + "/" + rs.Name, true
}

// enqueueMatching queues every ReplicaSet whose selector matches an
// orphan pod, so that one of them adopts it.
func (c *Controller) enqueueMatching(pod *corev1.Pod) {
	list, err := c.rsLister.ReplicaSets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, rs := range list {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		c.loop.Add(pod.Namespace + "/" + rs.Name)
	}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (c *Controller) onPodAdd(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		// Seen first while already terminating (e.g. after a restart).
		c.onPodDelete(pod)
		return
	}
	if key, ok := c.controllerOf(pod); ok {
		c.exp.CreationObserved(key)
		c.loop.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(pod) == nil {
		c.enqueueMatching(pod)
	}
}

func (c *Controller) onPodUpdate(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if cur.DeletionTimestamp != nil {
		// A graceful deletion: the pod no longer counts, so the deletion
		// we expected is observed now rather than when the pod goes.
		c.onPodDelete(cur)
		if !labels.Equals(old.Labels, cur.Labels) {
			if key, ok := c.controllerOf(old); ok {
				c.loop.Add(key)
			}
		}
		return
	}
	oldKey, oldOK := c.controllerOf(old)
	curKey, curOK := c.controllerOf(cur)
	if oldOK && (!curOK || oldKey != curKey) {
		c.loop.Add(oldKey)
	}
	if curOK {
		c.loop.Add(curKey)
		return
	}
	if metav1.GetControllerOfNoCopy(cur) == nil &&
		(!labels.Equals(old.Labels, cur.Labels) || metav1.GetControllerOfNoCopy(old) != nil) {
		c.enqueueMatching(cur)
	}
}

func (c *Controller) onPodDelete(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, isTomb := obj.(cache.DeletedFinalStateUnknown)
		if !isTomb {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	if key, ok := c.controllerOf(pod); ok {
		c.exp.DeletionObserved(key, podKey(pod))
		c.loop.Add(key)
	}
}

// Reconcile syncs the ReplicaSet namespace/name: claims its pods, creates
// or deletes pods when its expectations are satisfied, and writes status.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	rs, err := c.rsLister.ReplicaSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	needsSync := c.exp.Satisfied(key)
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		c.log.Warn("replicaset has an invalid or empty selector", "replicaset", key, "err", err)
		return 0, nil
	}
	cands, err := ownership.Candidates(c.podIndexer, rs)
	if err != nil {
		return 0, err
	}
	var active []*corev1.Pod
	for _, o := range cands {
		if p, ok := o.(*corev1.Pod); ok && podstate.Active(p) {
			active = append(active, p)
		}
	}
	claimer := &ownership.Claimer{Owner: rs, Kind: Kind, Selector: sel,
		Recheck: ownership.RecheckOwner(rs, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		}),
		Patch: func(ctx context.Context, ns, name string, pt types.PatchType, data []byte) error {
			_, err := c.client.CoreV1().Pods(ns).Patch(ctx, name, pt, data, metav1.PatchOptions{})
			return err
		}}
	pods, claimErr := ownership.Claim(ctx, claimer, active)

	var manageErr error
	if needsSync && rs.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, rs, pods)
	}
	now := c.clock.Now()
	status := calculateStatus(rs, pods, manageErr, now)
	updated, err := c.updateStatus(ctx, rs, status)
	if err != nil {
		return 0, errors.Join(manageErr, claimErr, fmt.Errorf("update status of replicaset %s: %w", key, err))
	}
	if err := errors.Join(manageErr, claimErr); err != nil {
		return 0, err
	}
	return nextAvailable(updated, pods, now), nil
}

// nextAvailable is how long until a ready pod becomes available, so that
// status catches up with minReadySeconds; 0 when none waits.
func nextAvailable(rs *appsv1.ReplicaSet, pods []*corev1.Pod, now time.Time) time.Duration {
	if rs.Spec.MinReadySeconds == 0 {
		return 0
	}
	var next time.Duration
	for _, p := range pods {
		at, ok := podstate.AvailableAt(p, rs.Spec.MinReadySeconds)
		if !ok || !at.After(now) {
			continue
		}
		if d := at.Sub(now) + 10*time.Millisecond; next == 0 || d < next {
			next = d
		}
	}
	return next
}

// manage creates or deletes pods so that len(pods) reaches spec.replicas.
func (c *Controller) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, pods []*corev1.Pod) error {
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	diff := len(pods) - int(want)
	switch {
	case diff < 0:
		n := min(-diff, c.cfg.BurstReplicas)
		c.exp.ExpectCreations(key, n)
		ref := ownership.ControllerRef(rs, Kind)
		done, err := SlowStartBatch(n, 1, func() error {
			err := c.createPod(ctx, rs, ref)
			if err != nil && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				// The namespace is going: do not retry.
				return nil
			}
			return err
		})
		for range n - done {
			// Never sent or failed: no event will come for these.
			c.exp.CreationObserved(key)
		}
		return err
	case diff > 0:
		n := min(diff, c.cfg.BurstReplicas)
		victims := PodsToDelete(pods, c.relatedPods(rs, pods), n)
		keys := make([]string, len(victims))
		for i, p := range victims {
			keys[i] = podKey(p)
		}
		c.exp.ExpectDeletions(key, keys)
		var wg sync.WaitGroup
		errs := make([]error, len(victims))
		for i, p := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
				if err != nil {
					c.exp.DeletionObserved(key, podKey(p))
					if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
						c.rec.Eventf(rs, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
						errs[i] = fmt.Errorf("delete pod %s: %w", p.Name, err)
					}
					return
				}
				c.rec.Eventf(rs, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return nil
}

func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet, ref metav1.OwnerReference) error {
	pod := PodFromTemplate(&rs.Spec.Template, rs, ref)
	created, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		c.rec.Eventf(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("create pod for replicaset %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	c.rec.Eventf(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", created.Name)
	return nil
}

// PodFromTemplate is the pod a controller creates from template: labels,
// annotations, finalizers and spec copied, named <owner>-<random>, with the
// controller reference ref.
func PodFromTemplate(template *corev1.PodTemplateSpec, owner metav1.Object, ref metav1.OwnerReference) *corev1.Pod {
	t := template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    owner.GetName() + "-",
			Namespace:       owner.GetNamespace(),
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{ref},
		},
		Spec: t.Spec,
	}
}

// SlowStartBatch calls fn count times in batches of 1, 2, 4, … (starting
// at initial) run in parallel, and stops after the first batch with a
// failure, so that a controller hitting an error (quota, admission) sends
// few doomed requests. It returns how many calls succeeded.
func SlowStartBatch(count, initial int, fn func() error) (int, error) {
	remaining, ok := count, 0
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		ok += batch - len(errs)
		if len(errs) > 0 {
			return ok, <-errs
		}
		remaining -= batch
	}
	return ok, nil
}

// relatedPods are the pods of this ReplicaSet and of its siblings (the
// ReplicaSets with the same controller, e.g. one Deployment's), used to
// prefer deleting pods on crowded nodes.
func (c *Controller) relatedPods(rs *appsv1.ReplicaSet, own []*corev1.Pod) []*corev1.Pod {
	ref := metav1.GetControllerOfNoCopy(rs)
	if ref == nil {
		return own
	}
	siblings, err := c.rsIndexer.ByIndex(ownership.IndexName, string(ref.UID))
	if err != nil {
		return own
	}
	var out []*corev1.Pod
	for _, s := range siblings {
		sib, ok := s.(*appsv1.ReplicaSet)
		if !ok {
			continue
		}
		objs, err := c.podIndexer.ByIndex(ownership.IndexName, string(sib.UID))
		if err != nil {
			continue
		}
		for _, o := range objs {
			if p, ok := o.(*corev1.Pod); ok && podstate.Active(p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// updateStatus writes status when it differs, retrying a conflict once
// with a fresh read.
func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, status appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	status.ObservedGeneration = rs.Generation
	if statusEqual(rs.Status, status) {
		return rs, nil
	}
	cur := rs.DeepCopy()
	for i := 0; ; i++ {
		status.ObservedGeneration = cur.Generation
		cur.Status = status
		updated, err := c.client.AppsV1().ReplicaSets(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			return updated, nil
		}
		if i >= statusRetries || !apierrors.IsConflict(err) {
			return nil, err
		}
		fresh, gerr := c.client.AppsV1().ReplicaSets(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, errors.Join(err, gerr)
		}
		cur = fresh
	}
}

func statusEqual(a, b appsv1.ReplicaSetStatus) bool {
	if a.Replicas != b.Replicas || a.FullyLabeledReplicas != b.FullyLabeledReplicas || a.ReadyReplicas != b.ReadyReplicas ||
		a.AvailableReplicas != b.AvailableReplicas || a.ObservedGeneration != b.ObservedGeneration || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}

// calculateStatus counts the claimed pods and records a failure to create
// or delete pods as the ReplicaFailure condition.
func calculateStatus(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	template := labels.SelectorFromSet(rs.Spec.Template.Labels)
	var labeled, ready, available int32
	for _, p := range pods {
		if template.Matches(labels.Set(p.Labels)) {
			labeled++
		}
		if podstate.Ready(p) {
			ready++
			if podstate.Available(p, rs.Spec.MinReadySeconds, now) {
				available++
			}
		}
	}
	failure := condition(st.Conditions, appsv1.ReplicaSetReplicaFailure)
	switch {
	case manageErr != nil && failure == nil:
		want := int32(1)
		if rs.Spec.Replicas != nil {
			want = *rs.Spec.Replicas
		}
		reason := "FailedCreate"
		if int32(len(pods)) > want {
			reason = "FailedDelete"
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{Type: appsv1.ReplicaSetReplicaFailure,
			Status: corev1.ConditionTrue, Reason: reason, Message: manageErr.Error(), LastTransitionTime: metav1.NewTime(now)})
	case manageErr == nil && failure != nil:
		var keep []appsv1.ReplicaSetCondition
		for _, c := range st.Conditions {
			if c.Type != appsv1.ReplicaSetReplicaFailure {
				keep = append(keep, c)
			}
		}
		st.Conditions = keep
	}
	st.Replicas = int32(len(pods))
	st.FullyLabeledReplicas = labeled
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	return st
}

func condition(conds []appsv1.ReplicaSetCondition, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}
