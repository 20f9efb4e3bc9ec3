// Package statefulset is the StatefulSet controller: it gives each
// StatefulSet pods with stable names <set>-<ordinal> and hostnames under
// the governing service, created in order and each after its predecessor
// is Running and Ready (OrderedReady) or all at once (Parallel), removed
// highest ordinal first, replaced by RollingUpdate (highest ordinal first,
// down to the partition) or OnDelete, with templates recorded as
// ControllerRevisions (status.currentRevision and updateRevision) and
// status for kubectl rollout status.
//
// volumeClaimTemplates are not acted on: the API server does not serve
// persistentvolumeclaims yet, so no claims are created and pods get no
// claim volumes.
package statefulset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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

	"github.com/skiff-sh/skiff/internal/controller/history"
	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
)

// Kind is the StatefulSet kind owner references name.
var Kind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Config configures the controller.
type Config struct {
	// Client writes pods, revisions and StatefulSet status.
	Client kubernetes.Interface
	// Factory provides the informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// Workers is the number of StatefulSets synced at once (default 5).
	Workers int
}

// Controller is the StatefulSet controller. It keeps no expectations, as
// upstream: pod names are fixed, so acting twice on a stale cache finds
// the pod existing (creation) or gone (deletion by UID).
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	log        *slog.Logger
	clock      clock.Clock
	rec        record.EventRecorder
	loop       *loop.Loop
	setLister  appslisters.StatefulSetLister
	podIndexer cache.Indexer
	revs       *history.Store
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
	setInf := cfg.Factory.Apps().V1().StatefulSets()
	podInf := cfg.Factory.Core().V1().Pods()
	revInf := cfg.Factory.Apps().V1().ControllerRevisions()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder,
		setLister: setInf.Lister(), podIndexer: podInf.Informer().GetIndexer(),
		revs:   &history.Store{Client: cfg.Client, Indexer: revInf.Informer().GetIndexer(), Kind: Kind},
		synced: []cache.InformerSynced{setInf.Informer().HasSynced, podInf.Informer().HasSynced, revInf.Informer().HasSynced}}
	c.loop = loop.New("statefulset", c, cfg.Logger)
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), revInf.Informer()} {
		if err := ownership.AddIndex(inf); err != nil {
			return nil, fmt.Errorf("statefulset controller: %w", err)
		}
	}
	owned := cache.ResourceEventHandlerFuncs{AddFunc: c.onOwned, DeleteFunc: c.onOwned,
		UpdateFunc: func(oldObj, newObj any) {
			if o, ok := oldObj.(metav1.Object); ok {
				if key, ok := c.ownerOf(o); ok {
					c.loop.Add(key)
				}
			}
			c.onOwned(newObj)
		}}
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), revInf.Informer()} {
		if _, err := inf.AddEventHandler(owned); err != nil {
			return nil, fmt.Errorf("statefulset controller: handler: %w", err)
		}
	}
	if _, err := setInf.Informer().AddEventHandler(c.loop.Handler()); err != nil {
		return nil, fmt.Errorf("statefulset controller: handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("statefulset controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// ownerOf returns the key of the StatefulSet controlling obj, if any.
func (c *Controller) ownerOf(obj metav1.Object) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || ref.Kind != Kind.Kind || ref.APIVersion != Kind.GroupVersion().String() {
		return "", false
	}
	set, err := c.setLister.StatefulSets(obj.GetNamespace()).Get(ref.Name)
	if err != nil || set.UID != ref.UID {
		return "", false
	}
	return set.Namespace + "/" + set.Name, true
}

// onOwned queues the owner of a pod or revision, or, for an orphan, every
// StatefulSet that would adopt it.
func (c *Controller) onOwned(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	if key, ok := c.ownerOf(m); ok {
		c.loop.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(m) != nil {
		return
	}
	list, err := c.setLister.StatefulSets(m.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, set := range list {
		sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(m.GetLabels())) {
			c.loop.Add(set.Namespace + "/" + set.Name)
		}
	}
}

// Reconcile syncs the StatefulSet namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	set, err := c.setLister.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		c.log.Warn("statefulset has an invalid or empty selector", "statefulset", key, "err", err)
		return 0, nil
	}
	if set.DeletionTimestamp != nil {
		// The garbage collector removes the pods; nothing to create.
		return 0, nil
	}
	pods, claimErr := c.claimPods(ctx, set, sel)
	revs, err := c.revs.Claim(ctx, set, c.claimer(set, sel))
	claimErr = errors.Join(claimErr, err)
	w, err := c.revisions(ctx, set, revs)
	if err != nil {
		return 0, errors.Join(claimErr, err)
	}
	w.pods, w.now = pods, c.clock.Now()
	p, st := decide(w)
	syncErr := errors.Join(c.sync(ctx, set, p), c.cleanupHistory(ctx, set, pods, revs, w))
	if err := c.updateStatus(ctx, set, st); err != nil {
		return 0, errors.Join(claimErr, syncErr, fmt.Errorf("update status of statefulset %s: %w", key, err))
	}
	if err := errors.Join(claimErr, syncErr); err != nil {
		return 0, err
	}
	return nextAvailable(w), nil
}

func (c *Controller) claimer(set *appsv1.StatefulSet, sel labels.Selector) *ownership.Claimer {
	return &ownership.Claimer{Owner: set, Kind: Kind, Selector: sel,
		Recheck: ownership.RecheckOwner(set, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().StatefulSets(set.Namespace).Get(ctx, set.Name, metav1.GetOptions{})
		})}
}

// claimPods returns the set's pods: those named <set>-<ordinal> that it
// controls or adopts.
func (c *Controller) claimPods(ctx context.Context, set *appsv1.StatefulSet, sel labels.Selector) ([]*corev1.Pod, error) {
	cands, err := ownership.Candidates(c.podIndexer, set)
	if err != nil {
		return nil, err
	}
	var members []*corev1.Pod
	for _, o := range cands {
		if p, ok := o.(*corev1.Pod); ok && ordinal(set, p) >= 0 {
			members = append(members, p)
		}
	}
	cl := c.claimer(set, sel)
	cl.Patch = func(ctx context.Context, ns, name string, pt types.PatchType, data []byte) error {
		_, err := c.client.CoreV1().Pods(ns).Patch(ctx, name, pt, data, metav1.PatchOptions{})
		return err
	}
	return ownership.Claim(ctx, cl, members)
}

// revisions finds or creates the update revision (the set's template) and
// finds the current one (status.currentRevision, or the update revision
// for a new set); a hash collision raises status.collisionCount and fails
// the sync so that it is retried with the new count.
func (c *Controller) revisions(ctx context.Context, set *appsv1.StatefulSet, revs []*appsv1.ControllerRevision) (*world, error) {
	data, err := history.TemplatePatch(&set.Spec.Template)
	if err != nil {
		return nil, err
	}
	update, err := c.revs.Current(ctx, set, set.Spec.Template.Labels, data, revs, set.Status.CollisionCount)
	if errors.Is(err, history.ErrCollision) {
		fresh := set.DeepCopy()
		n := int32(1)
		if fresh.Status.CollisionCount != nil {
			n = *fresh.Status.CollisionCount + 1
		}
		fresh.Status.CollisionCount = &n
		if _, uerr := c.client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, fresh, metav1.UpdateOptions{}); uerr != nil {
			return nil, errors.Join(err, uerr)
		}
	}
	if err != nil {
		return nil, err
	}
	w := &world{set: set, current: update, update: update, updateTemplate: &set.Spec.Template}
	for _, r := range revs {
		if r.Name == set.Status.CurrentRevision && r.Name != update.Name {
			w.current = r
		}
	}
	w.currentTemplate = w.updateTemplate
	if w.current != w.update {
		if w.currentTemplate, err = history.Template(w.current); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// cleanupHistory deletes the oldest revisions beyond revisionHistoryLimit
// that are neither current, nor the update, nor used by a pod.
func (c *Controller) cleanupHistory(ctx context.Context, set *appsv1.StatefulSet, pods []*corev1.Pod, revs []*appsv1.ControllerRevision, w *world) error {
	limit := int32(10)
	if set.Spec.RevisionHistoryLimit != nil {
		limit = *set.Spec.RevisionHistoryLimit
	}
	live := map[string]bool{w.current.Name: true, w.update.Name: true}
	for _, p := range pods {
		live[revisionOf(p)] = true
	}
	return c.revs.Truncate(ctx, revs, live, limit)
}

// sync carries out a plan: creations in parallel (a plan has one unless
// the set is Parallel), deletions by UID, identity labels by patch.
func (c *Controller) sync(ctx context.Context, set *appsv1.StatefulSet, p plan) error {
	var wg sync.WaitGroup
	errs := make([]error, len(p.create)+len(p.del)+len(p.relabel))
	run := func(i int, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	for i, pod := range p.create {
		run(i, func() error { return c.createPod(ctx, set, pod) })
	}
	for i, pod := range p.del {
		run(len(p.create)+i, func() error { return c.deletePod(ctx, set, pod) })
	}
	for i, pod := range p.relabel {
		run(len(p.create)+len(p.del)+i, func() error { return c.relabel(ctx, set, pod) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Controller) createPod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	_, err := c.client.CoreV1().Pods(set.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	switch {
	case err == nil:
		c.rec.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, set.Name)
		return nil
	case apierrors.IsAlreadyExists(err), apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		// A stale cache, or the namespace is going: nothing to retry.
		return nil
	default:
		c.rec.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return fmt.Errorf("create pod %s: %w", pod.Name, err)
	}
}

func (c *Controller) deletePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	switch {
	case err == nil:
		c.rec.Eventf(set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, set.Name)
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil
	default:
		c.rec.Eventf(set, corev1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return fmt.Errorf("delete pod %s: %w", pod.Name, err)
	}
}

// relabel sets the pod-name and pod-index labels of a pod (adopted, or
// made before they existed).
func (c *Controller) relabel(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	patch := map[string]any{"metadata": map[string]any{"uid": pod.UID, "labels": map[string]string{
		PodNameLabel: pod.Name, PodIndexLabel: fmt.Sprint(ordinal(set, pod))}}}
	data, err := json.Marshal(patch)
	if err != nil {
		return fmt.Errorf("relabel pod %s: %w", pod.Name, err)
	}
	if _, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, data, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("relabel pod %s: %w", pod.Name, err)
	}
	return nil
}

// updateStatus writes status when it differs, retrying a conflict once
// with a fresh read of the same generation.
func (c *Controller) updateStatus(ctx context.Context, set *appsv1.StatefulSet, st appsv1.StatefulSetStatus) error {
	st.Conditions = set.Status.Conditions
	if equality.Semantic.DeepEqual(set.Status, st) {
		return nil
	}
	cur := set.DeepCopy()
	for i := 0; ; i++ {
		st.CollisionCount = cur.Status.CollisionCount
		cur.Status = st
		_, err := c.client.AppsV1().StatefulSets(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil || i >= 1 || !apierrors.IsConflict(err) {
			return err
		}
		fresh, gerr := c.client.AppsV1().StatefulSets(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil || fresh.Generation != set.Generation {
			return errors.Join(err, gerr)
		}
		cur = fresh
	}
}
