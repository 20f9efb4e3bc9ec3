// Package deployment is the Deployment controller: it keeps one
// ReplicaSet per pod template (named <deployment>-<pod-template-hash>),
// rolls pods from the old ReplicaSets to the new one (RollingUpdate within
// maxSurge and maxUnavailable, or Recreate), scales proportionally, keeps
// revisionHistoryLimit old ReplicaSets, honours pause, and reports
// progress in conditions that kubectl rollout status reads.
package deployment

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
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

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
)

// Kind is the Deployment kind owner references name.
var Kind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// Config configures the controller.
type Config struct {
	// Client writes ReplicaSets and Deployment status.
	Client kubernetes.Interface
	// Factory provides the Deployment, ReplicaSet and pod informers; the
	// caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// Workers is the number of Deployments synced at once (default 5).
	Workers int
}

// Controller is the Deployment controller.
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	log        *slog.Logger
	clock      clock.Clock
	rec        record.EventRecorder
	loop       *loop.Loop
	dLister    appslisters.DeploymentLister
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
	dInf := cfg.Factory.Apps().V1().Deployments()
	rsInf := cfg.Factory.Apps().V1().ReplicaSets()
	podInf := cfg.Factory.Core().V1().Pods()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder,
		dLister: dInf.Lister(), rsLister: rsInf.Lister(), rsIndexer: rsInf.Informer().GetIndexer(),
		podIndexer: podInf.Informer().GetIndexer(),
		synced:     []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced}}
	c.loop = loop.New("deployment", c, cfg.Logger)
	for _, inf := range []cache.SharedIndexInformer{rsInf.Informer(), podInf.Informer()} {
		if err := ownership.AddIndex(inf); err != nil {
			return nil, fmt.Errorf("deployment controller: %w", err)
		}
	}
	if _, err := dInf.Informer().AddEventHandler(c.loop.Handler()); err != nil {
		return nil, fmt.Errorf("deployment controller: deployment handler: %w", err)
	}
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.onRS,
		UpdateFunc: func(oldObj, newObj any) {
			old, cur := oldObj.(*appsv1.ReplicaSet), newObj.(*appsv1.ReplicaSet)
			if old.ResourceVersion == cur.ResourceVersion {
				return
			}
			if metav1.GetControllerOfNoCopy(old) != nil {
				c.onRS(old)
			}
			c.onRS(cur)
		},
		DeleteFunc: c.onRS,
	}); err != nil {
		return nil, fmt.Errorf("deployment controller: replicaset handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: c.onPodDelete}); err != nil {
		return nil, fmt.Errorf("deployment controller: pod handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("deployment controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// deploymentOf returns the key of the Deployment controlling obj.
func (c *Controller) deploymentOf(obj metav1.Object) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || ref.Kind != Kind.Kind || ref.APIVersion != Kind.GroupVersion().String() {
		return "", false
	}
	d, err := c.dLister.Deployments(obj.GetNamespace()).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return "", false
	}
	return d.Namespace + "/" + d.Name, true
}

func (c *Controller) onRS(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if key, ok := c.deploymentOf(rs); ok {
		c.loop.Add(key)
		return
	}
	if metav1.GetControllerOfNoCopy(rs) != nil {
		return
	}
	// An orphan: every Deployment that would adopt it.
	list, err := c.dLister.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range list {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.loop.Add(d.Namespace + "/" + d.Name)
		}
	}
}

// onPodDelete wakes a Recreate rollout waiting for old pods to go.
func (c *Controller) onPodDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.rsLister.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	if key, ok := c.deploymentOf(rs); ok {
		c.loop.Add(key)
	}
}

// Reconcile syncs the Deployment namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.dLister.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	d := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() {
		c.rec.Eventf(d, corev1.EventTypeWarning, "SelectingAll", "This deployment is selecting all pods. A non-empty selector is required.")
		return 0, nil
	}
	rsList, err := c.claimReplicaSets(ctx, d, sel)
	if err != nil {
		return 0, err
	}
	s := &syncer{c: c, d: d, all: rsList}
	if d.DeletionTimestamp != nil {
		return 0, s.statusOnly(ctx)
	}
	if err := s.checkPaused(ctx); err != nil {
		return 0, err
	}
	if d.Spec.Paused {
		return 0, s.scaleAndStatus(ctx)
	}
	if s.isScalingEvent() {
		return 0, s.scaleAndStatus(ctx)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return s.recreate(ctx)
	default:
		return s.rolling(ctx)
	}
}

func (c *Controller) claimReplicaSets(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	cands, err := ownership.Candidates(c.rsIndexer, d)
	if err != nil {
		return nil, err
	}
	rss := make([]*appsv1.ReplicaSet, 0, len(cands))
	for _, o := range cands {
		if rs, ok := o.(*appsv1.ReplicaSet); ok {
			rss = append(rss, rs)
		}
	}
	claimer := &ownership.Claimer{Owner: d, Kind: Kind, Selector: sel,
		Recheck: ownership.RecheckOwner(d, func(ctx context.Context) (metav1.Object, error) {
			return c.client.AppsV1().Deployments(d.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
		}),
		Patch: func(ctx context.Context, ns, name string, pt types.PatchType, data []byte) error {
			_, err := c.client.AppsV1().ReplicaSets(ns).Patch(ctx, name, pt, data, metav1.PatchOptions{})
			return err
		}}
	return ownership.Claim(ctx, claimer, rss)
}

// syncer is the state of one Deployment's sync.
type syncer struct {
	c   *Controller
	d   *appsv1.Deployment
	all []*appsv1.ReplicaSet // claimed, from the cache (read-only)
}

// split returns the new ReplicaSet (nil when none matches the template)
// and the old ones; with create it creates the new one.
func (s *syncer) split(ctx context.Context, create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet, error) {
	var old []*appsv1.ReplicaSet
	var found *appsv1.ReplicaSet
	sorted := append([]*appsv1.ReplicaSet(nil), s.all...)
	byCreation(sorted)
	for _, rs := range sorted {
		if found == nil && EqualIgnoreHash(&rs.Spec.Template, &s.d.Spec.Template) {
			found = rs
			continue
		}
		old = append(old, rs)
	}
	newRS, err := s.newReplicaSet(ctx, found, old, create)
	return newRS, old, err
}

// updateStatus writes d's status (and revision annotation) and keeps the
// result so that later writes in this sync do not conflict.
func (s *syncer) updateStatus(ctx context.Context) error {
	updated, err := s.c.client.AppsV1().Deployments(s.d.Namespace).UpdateStatus(ctx, s.d, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("update status of deployment %s/%s: %w", s.d.Namespace, s.d.Name, err)
	}
	s.d = updated
	return nil
}

func (s *syncer) now() metav1.Time { return metav1.NewTime(s.c.clock.Now()) }

// newReplicaSet brings an existing new ReplicaSet's annotations and
// minReadySeconds up to date, or creates it when create is set.
func (s *syncer) newReplicaSet(ctx context.Context, existing *appsv1.ReplicaSet, old []*appsv1.ReplicaSet, create bool) (*appsv1.ReplicaSet, error) {
	d := s.d
	newRevision := strconv.FormatInt(maxRevision(old)+1, 10)
	if existing != nil {
		rs := existing.DeepCopy()
		changed := setNewRSAnnotations(d, rs, newRevision, true)
		if changed || rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			updated, err := s.c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, rs, metav1.UpdateOptions{})
			if err != nil {
				return nil, fmt.Errorf("update replicaset %s: %w", rs.Name, err)
			}
			rs = updated
		}
		needsUpdate := setRevision(d, rs.Annotations[RevisionAnnotation])
		if hasProgressDeadline(d) && getCondition(&d.Status, appsv1.DeploymentProgressing) == nil {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", rs.Name), s.now()))
			needsUpdate = true
		}
		if needsUpdate {
			if err := s.updateStatus(ctx); err != nil {
				return nil, err
			}
		}
		return rs, nil
	}
	if !create {
		return nil, nil
	}
	template := *d.Spec.Template.DeepCopy()
	hash := ComputeHash(&template, d.Status.CollisionCount)
	template.Labels = withLabel(d.Spec.Template.Labels, HashLabel, hash)
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[HashLabel] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: template.Labels,
			OwnerReferences: []metav1.OwnerReference{ownership.ControllerRef(d, Kind)},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: new(int32), MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: template},
	}
	n := s.newRSReplicas(append(append([]*appsv1.ReplicaSet(nil), old...), rs), rs)
	rs.Spec.Replicas = &n
	setNewRSAnnotations(d, rs, newRevision, false)
	created, err := s.c.client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	alreadyExists := false
	switch {
	case apierrors.IsAlreadyExists(err):
		alreadyExists = true
		cur, gerr := s.c.rsLister.ReplicaSets(d.Namespace).Get(rs.Name)
		if gerr == nil && metav1.IsControlledBy(cur, d) && EqualIgnoreHash(&d.Spec.Template, &cur.Spec.Template) {
			// Ours, created by an earlier sync the cache has not seen claimed.
			created, err = cur, nil
			break
		}
		// A hash collision: bump the count so the next hash differs.
		if d.Status.CollisionCount == nil {
			d.Status.CollisionCount = new(int32)
		}
		*d.Status.CollisionCount++
		if uerr := s.updateStatus(ctx); uerr != nil {
			return nil, uerr
		}
		return nil, fmt.Errorf("replicaset %s exists with another template (hash collision): %w", rs.Name, err)
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil, err
	case err != nil:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if hasProgressDeadline(d) {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonFailedRSCreate, msg, s.now()))
			_ = s.updateStatus(ctx) // best effort: the creation error is what matters
		}
		s.c.rec.Event(d, corev1.EventTypeWarning, ReasonFailedRSCreate, msg)
		return nil, fmt.Errorf("create replicaset %s: %w", rs.Name, err)
	}
	if !alreadyExists && n > 0 {
		s.c.rec.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", created.Name, n)
	}
	needsUpdate := setRevision(d, newRevision)
	if !alreadyExists && hasProgressDeadline(d) {
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSCreated,
			fmt.Sprintf("Created new replica set %q", created.Name), s.now()))
		needsUpdate = true
	}
	if needsUpdate {
		if err := s.updateStatus(ctx); err != nil {
			return nil, err
		}
	}
	s.all = append(s.all, created)
	return created, nil
}

func withLabel(in map[string]string, k, v string) map[string]string {
	out := make(map[string]string, len(in)+1)
	for a, b := range in {
		out[a] = b
	}
	out[k] = v
	return out
}

// setRevision sets the Deployment's revision annotation.
func setRevision(d *appsv1.Deployment, rev string) bool {
	if d.Annotations[RevisionAnnotation] == rev {
		return false
	}
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[RevisionAnnotation] = rev
	return true
}
