// Package daemonset is the DaemonSet controller: it keeps one pod of each
// DaemonSet on every node the pod template fits (node selector, required
// node affinity, taints and tolerations), pins each pod to its node with a
// required node affinity on metadata.name that the scheduler honours,
// replaces pods by RollingUpdate (maxUnavailable, maxSurge) or OnDelete,
// records templates as ControllerRevisions and reports status for kubectl
// rollout status.
package daemonset

import (
	"context"
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
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/expectations"
	"github.com/skiff-sh/skiff/internal/controller/history"
	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
	"github.com/skiff-sh/skiff/internal/controller/replicaset"
)

// Kind is the DaemonSet kind owner references name.
var Kind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// DefaultBurstReplicas bounds the pods created or deleted in one sync.
const DefaultBurstReplicas = 250

// Config configures the controller.
type Config struct {
	// Client writes pods, revisions and DaemonSet status.
	Client kubernetes.Interface
	// Factory provides the informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// Workers is the number of DaemonSets synced at once (default 2).
	Workers int
	// BurstReplicas bounds creations or deletions per sync (default 250).
	BurstReplicas int
}

// Controller is the DaemonSet controller.
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	log        *slog.Logger
	clock      clock.Clock
	rec        record.EventRecorder
	creates    *expectations.Store
	deletes    *expectations.Store
	loop       *loop.Loop
	dsLister   appslisters.DaemonSetLister
	nodeLister corelisters.NodeLister
	podIndexer cache.Indexer
	revs       *history.Store
	// failed backs off replacing failed pods, per DaemonSet and node.
	failed *flowcontrol.Backoff
	synced []cache.InformerSynced
}

// Back-off of replacing failed daemon pods, as upstream.
const (
	failedBackoffInitial = time.Second
	failedBackoffMax     = 15 * time.Minute
)

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
		cfg.Workers = 2
	}
	if cfg.BurstReplicas == 0 {
		cfg.BurstReplicas = DefaultBurstReplicas
	}
	dsInf := cfg.Factory.Apps().V1().DaemonSets()
	podInf := cfg.Factory.Core().V1().Pods()
	nodeInf := cfg.Factory.Core().V1().Nodes()
	revInf := cfg.Factory.Apps().V1().ControllerRevisions()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder,
		creates: expectations.New(cfg.Clock, 0), deletes: expectations.New(cfg.Clock, 0),
		dsLister: dsInf.Lister(), nodeLister: nodeInf.Lister(), podIndexer: podInf.Informer().GetIndexer(),
		revs:   &history.Store{Client: cfg.Client, Indexer: revInf.Informer().GetIndexer(), Kind: Kind},
		failed: flowcontrol.NewFakeBackOff(failedBackoffInitial, failedBackoffMax, cfg.Clock),
		synced: []cache.InformerSynced{dsInf.Informer().HasSynced, podInf.Informer().HasSynced,
			nodeInf.Informer().HasSynced, revInf.Informer().HasSynced}}
	c.loop = loop.New("daemonset", c, cfg.Logger)
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), revInf.Informer()} {
		if err := ownership.AddIndex(inf); err != nil {
			return nil, fmt.Errorf("daemonset controller: %w", err)
		}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{dsInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.loop.Enqueue,
			UpdateFunc: func(_, obj any) { c.loop.Enqueue(obj) }, DeleteFunc: c.onDSDelete}},
		{podInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.onPodAdd, UpdateFunc: c.onPodUpdate, DeleteFunc: c.onPodDelete}},
		{nodeInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.onNode,
			UpdateFunc: c.onNodeUpdate, DeleteFunc: c.onNode}},
		{revInf.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: c.onOwned,
			UpdateFunc: func(_, obj any) { c.onOwned(obj) }, DeleteFunc: c.onOwned}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("daemonset controller: handler: %w", err)
		}
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("daemonset controller: caches did not sync: %w", context.Cause(ctx))
	}
	go wait.Until(c.failed.GC, time.Minute, ctx.Done())
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

func (c *Controller) onDSDelete(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.creates.Forget(key)
		c.deletes.Forget(key)
	}
	c.loop.Enqueue(obj)
}

// ownerOf returns the key of the DaemonSet controlling obj, if any.
func (c *Controller) ownerOf(obj metav1.Object) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || ref.Kind != Kind.Kind || ref.APIVersion != Kind.GroupVersion().String() {
		return "", false
	}
	ds, err := c.dsLister.DaemonSets(obj.GetNamespace()).Get(ref.Name)
	if err != nil || ds.UID != ref.UID {
		return "", false
	}
	return ds.Namespace + "/" + ds.Name, true
}

// enqueueMatching queues every DaemonSet whose selector matches the labels
// of an orphan in namespace.
func (c *Controller) enqueueMatching(namespace string, lbls map[string]string) {
	list, err := c.dsLister.DaemonSets(namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range list {
		sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(lbls)) {
			c.loop.Add(ds.Namespace + "/" + ds.Name)
		}
	}
}

func unwrap(obj any) any {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}

func (c *Controller) onOwned(obj any) {
	m, ok := unwrap(obj).(metav1.Object)
	if !ok {
		return
	}
	if key, ok := c.ownerOf(m); ok {
		c.loop.Add(key)
	} else if metav1.GetControllerOfNoCopy(m) == nil {
		c.enqueueMatching(m.GetNamespace(), m.GetLabels())
	}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (c *Controller) onPodAdd(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		c.onPodDelete(pod)
		return
	}
	if key, ok := c.ownerOf(pod); ok {
		c.creates.CreationObserved(key)
	}
	c.onOwned(pod)
}

func (c *Controller) onPodUpdate(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Pod), newObj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	if cur.DeletionTimestamp != nil {
		c.onPodDelete(cur)
		return
	}
	if key, ok := c.ownerOf(old); ok {
		c.loop.Add(key)
	}
	c.onOwned(cur)
}

func (c *Controller) onPodDelete(obj any) {
	pod, ok := unwrap(obj).(*corev1.Pod)
	if !ok {
		return
	}
	if key, ok := c.ownerOf(pod); ok {
		c.deletes.DeletionObserved(key, podKey(pod))
		c.loop.Add(key)
	}
}

// onNodeUpdate wakes the DaemonSets when what decides placement changed:
// labels, taints, or the node's identity.
func (c *Controller) onNodeUpdate(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Node), newObj.(*corev1.Node)
	if labels.Equals(old.Labels, cur.Labels) && equality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) && old.UID == cur.UID {
		return
	}
	c.onNode(cur)
}

func (c *Controller) onNode(any) {
	list, err := c.dsLister.List(labels.Everything())
	if err != nil {
		return
	}
	for _, ds := range list {
		c.loop.Add(ds.Namespace + "/" + ds.Name)
	}
}

// Reconcile syncs the DaemonSet namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	ds, err := c.dsLister.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.creates.Forget(key)
		c.deletes.Forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		c.log.Warn("daemonset has an invalid or empty selector", "daemonset", key, "err", err)
		return 0, nil
	}
	if ds.DeletionTimestamp != nil {
		return 0, nil
	}
	needsSync := c.creates.Satisfied(key) && c.deletes.Satisfied(key)
	nodes, err := c.nodeLister.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	pods, claimErr := c.claimPods(ctx, ds, sel)
	revs, err := c.revs.Claim(ctx, ds, c.claimer(ds, sel))
	claimErr = errors.Join(claimErr, err)
	cur, err := c.currentRevision(ctx, ds, revs)
	if err != nil {
		return 0, errors.Join(claimErr, err)
	}
	now := c.clock.Now()
	w := &world{ds: ds, nodes: nodes, byNode: map[string][]*corev1.Pod{}, hash: cur.Labels[history.HashLabel], now: now,
		backoff: func(node string) time.Duration {
			if c.failed.IsInBackOffSinceUpdate(key+"/"+node, now) {
				return c.failed.Get(key + "/" + node)
			}
			return 0
		}}
	for _, p := range pods {
		w.byNode[targetNode(p)] = append(w.byNode[targetNode(p)], p)
	}
	var syncErr error
	var retry time.Duration
	if needsSync {
		p := decide(w)
		for _, node := range p.failedOn {
			c.failed.Next(key+"/"+node, now)
			c.rec.Eventf(ds, corev1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod on node %s, will try to kill it", node)
		}
		retry = p.retryAfter
		syncErr = c.sync(ctx, key, ds, p, w.hash)
		syncErr = errors.Join(syncErr, c.cleanupHistory(ctx, ds, pods, revs, cur))
	}
	if err := c.updateStatus(ctx, ds, status(w)); err != nil {
		return 0, errors.Join(claimErr, syncErr, fmt.Errorf("update status of daemonset %s: %w", key, err))
	}
	if err := errors.Join(claimErr, syncErr); err != nil {
		return 0, err
	}
	next := nextAvailable(w)
	if retry > 0 && (next == 0 || retry < next) {
		next = retry
	}
	return next, nil
}

func (c *Controller) claimer(ds *appsv1.DaemonSet, sel labels.Selector) *ownership.Claimer {
	return &ownership.Claimer{Owner: ds, Kind: Kind, Selector: sel,
		Recheck: ownership.RecheckOwner(ds, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().DaemonSets(ds.Namespace).Get(ctx, ds.Name, metav1.GetOptions{})
		})}
}

// claimPods returns the DaemonSet's pods that are not being deleted.
func (c *Controller) claimPods(ctx context.Context, ds *appsv1.DaemonSet, sel labels.Selector) ([]*corev1.Pod, error) {
	cands, err := ownership.Candidates(c.podIndexer, ds)
	if err != nil {
		return nil, err
	}
	var live []*corev1.Pod
	for _, o := range cands {
		if p, ok := o.(*corev1.Pod); ok && p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	cl := c.claimer(ds, sel)
	cl.Patch = func(ctx context.Context, ns, name string, pt types.PatchType, data []byte) error {
		_, err := c.client.CoreV1().Pods(ns).Patch(ctx, name, pt, data, metav1.PatchOptions{})
		return err
	}
	return ownership.Claim(ctx, cl, live)
}

// currentRevision finds or creates the revision of the DaemonSet's
// template; a hash collision raises status.collisionCount and fails the
// sync so that it is retried with the new count.
func (c *Controller) currentRevision(ctx context.Context, ds *appsv1.DaemonSet, revs []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	data, err := history.TemplatePatch(&ds.Spec.Template)
	if err != nil {
		return nil, err
	}
	cur, err := c.revs.Current(ctx, ds, ds.Spec.Template.Labels, data, revs, ds.Status.CollisionCount)
	if errors.Is(err, history.ErrCollision) {
		fresh := ds.DeepCopy()
		n := int32(0)
		if fresh.Status.CollisionCount != nil {
			n = *fresh.Status.CollisionCount
		}
		n++
		fresh.Status.CollisionCount = &n
		if _, uerr := c.client.AppsV1().DaemonSets(ds.Namespace).UpdateStatus(ctx, fresh, metav1.UpdateOptions{}); uerr != nil {
			return nil, errors.Join(err, uerr)
		}
	}
	return cur, err
}

// cleanupHistory deletes the oldest revisions beyond revisionHistoryLimit
// that neither the current template nor any pod uses.
func (c *Controller) cleanupHistory(ctx context.Context, ds *appsv1.DaemonSet, pods []*corev1.Pod, revs []*appsv1.ControllerRevision, cur *appsv1.ControllerRevision) error {
	limit := int32(10)
	if ds.Spec.RevisionHistoryLimit != nil {
		limit = *ds.Spec.RevisionHistoryLimit
	}
	used := map[string]bool{}
	for _, p := range pods {
		used[p.Labels[history.HashLabel]] = true
	}
	live := map[string]bool{cur.Name: true}
	for _, r := range revs {
		if used[r.Labels[history.HashLabel]] {
			live[r.Name] = true
		}
	}
	return c.revs.Truncate(ctx, revs, live, limit)
}

// sync carries out a plan within the burst limit, recording expectations
// first so that a stale cache does not repeat it.
func (c *Controller) sync(ctx context.Context, key string, ds *appsv1.DaemonSet, p plan, hash string) error {
	createOn := p.createOn[:min(len(p.createOn), c.cfg.BurstReplicas)]
	del := p.del[:min(len(p.del), c.cfg.BurstReplicas)]
	c.creates.ExpectCreations(key, len(createOn))
	keys := make([]string, len(del))
	for i, pod := range del {
		keys[i] = podKey(pod)
	}
	c.deletes.ExpectDeletions(key, keys)

	var mu sync.Mutex
	next := 0
	done, createErr := replicaset.SlowStartBatch(len(createOn), 1, func() error {
		mu.Lock()
		node := createOn[next]
		next++
		mu.Unlock()
		return c.createPod(ctx, ds, node, hash)
	})
	for range len(createOn) - done {
		c.creates.CreationObserved(key)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(del))
	for i, pod := range del {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
			if err != nil {
				c.deletes.DeletionObserved(key, podKey(pod))
				if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
					c.rec.Eventf(ds, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
					errs[i] = fmt.Errorf("delete pod %s: %w", pod.Name, err)
				}
				return
			}
			c.rec.Eventf(ds, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", pod.Name)
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, createErr)...)
}

// newPod is the daemon pod for node: the template with the revision hash
// label, the default tolerations and a node affinity pinning it to node.
func newPod(ds *appsv1.DaemonSet, node, hash string) *corev1.Pod {
	t := ds.Spec.Template.DeepCopy()
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[history.HashLabel] = hash
	if gen, ok := templateGeneration(ds); ok {
		t.Labels[templateGenerationLabel] = gen
	}
	t.Spec.Tolerations = withDefaultTolerations(&t.Spec)
	t.Spec.Affinity = nodeAffinityFor(t.Spec.Affinity, node)
	return replicaset.PodFromTemplate(t, ds, ownership.ControllerRef(ds, Kind))
}

func (c *Controller) createPod(ctx context.Context, ds *appsv1.DaemonSet, node, hash string) error {
	created, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, newPod(ds, node, hash), metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil
		}
		c.rec.Eventf(ds, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("create pod for daemonset %s/%s on node %s: %w", ds.Namespace, ds.Name, node, err)
	}
	c.rec.Eventf(ds, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", created.Name)
	return nil
}

// updateStatus writes status when it differs, retrying a conflict once
// with a fresh read.
func (c *Controller) updateStatus(ctx context.Context, ds *appsv1.DaemonSet, st appsv1.DaemonSetStatus) error {
	st.Conditions = ds.Status.Conditions
	if equality.Semantic.DeepEqual(ds.Status, st) {
		return nil
	}
	cur := ds.DeepCopy()
	for i := 0; ; i++ {
		st.CollisionCount = cur.Status.CollisionCount
		cur.Status = st
		_, err := c.client.AppsV1().DaemonSets(cur.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil || i >= 1 || !apierrors.IsConflict(err) {
			return err
		}
		// Retry on a fresh read only if the spec we counted for is current.
		fresh, gerr := c.client.AppsV1().DaemonSets(cur.Namespace).Get(ctx, cur.Name, metav1.GetOptions{})
		if gerr != nil || fresh.Generation != ds.Generation {
			return errors.Join(err, gerr)
		}
		cur = fresh
	}
}
