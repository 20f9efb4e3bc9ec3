// Package disruption is the disruption controller: it keeps each
// PodDisruptionBudget's status (expected, desired and current healthy
// pods, the disruptions allowed now) up to date, for the API server's
// eviction subresource to spend.
package disruption

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

// DeletionTimeout is how long a pod the eviction subresource disrupted
// (status.disruptedPods) is expected to take to be deleted; until then it
// does not count as healthy.
const DeletionTimeout = 2 * time.Minute

// Config configures the controller.
type Config struct {
	// Client writes PodDisruptionBudget status.
	Client kubernetes.Interface
	// Factory provides the informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// Workers is the number of budgets synced at once (default 2).
	Workers int
}

// Controller is the disruption controller.
type Controller struct {
	cfg          Config
	client       kubernetes.Interface
	loop         *loop.Loop
	pdbs         policylisters.PodDisruptionBudgetLister
	pods         corelisters.PodLister
	replicaSets  appslisters.ReplicaSetLister
	deployments  appslisters.DeploymentLister
	statefulSets appslisters.StatefulSetLister
	synced       []cache.InformerSynced
}

// New builds the controller and registers its informer handlers.
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
	pdbInf := cfg.Factory.Policy().V1().PodDisruptionBudgets()
	podInf := cfg.Factory.Core().V1().Pods()
	rsInf := cfg.Factory.Apps().V1().ReplicaSets()
	depInf := cfg.Factory.Apps().V1().Deployments()
	ssInf := cfg.Factory.Apps().V1().StatefulSets()
	c := &Controller{cfg: cfg, client: cfg.Client, pdbs: pdbInf.Lister(), pods: podInf.Lister(),
		replicaSets: rsInf.Lister(), deployments: depInf.Lister(), statefulSets: ssInf.Lister(),
		synced: []cache.InformerSynced{pdbInf.Informer().HasSynced, podInf.Informer().HasSynced,
			rsInf.Informer().HasSynced, depInf.Informer().HasSynced, ssInf.Informer().HasSynced}}
	c.loop = loop.New("disruption", c, cfg.Logger)
	onPod := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			c.enqueueNamespace(pod.Namespace, labels.Set(pod.Labels))
		}
	}
	// A workload's scale is its budgets' expected pod count.
	onWorkload := cache.ResourceEventHandlerFuncs{UpdateFunc: func(_, cur any) {
		if o, ok := cur.(metav1.Object); ok {
			c.enqueueNamespace(o.GetNamespace(), nil)
		}
	}}
	var errs []error
	_, err := pdbInf.Informer().AddEventHandler(c.loop.Handler())
	errs = append(errs, err)
	_, err = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(old, cur any) { onPod(old); onPod(cur) }, DeleteFunc: onPod})
	errs = append(errs, err)
	for _, inf := range []cache.SharedIndexInformer{rsInf.Informer(), depInf.Informer(), ssInf.Informer()} {
		_, err = inf.AddEventHandler(onWorkload)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("disruption controller: handlers: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("disruption controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// enqueueNamespace queues the budgets of ns that select set (all of
// them when set is nil).
func (c *Controller) enqueueNamespace(ns string, set labels.Set) {
	list, err := c.pdbs.PodDisruptionBudgets(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, pdb := range list {
		if set != nil {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err != nil || !sel.Matches(set) {
				continue
			}
		}
		c.loop.Add(ns + "/" + pdb.Name)
	}
}

// Reconcile recomputes the status of the budget namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pdb, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return 0, c.failSafe(ctx, pdb, fmt.Errorf("invalid selector: %w", err))
	}
	pods, err := c.pods.Pods(ns).List(sel)
	if err != nil {
		return 0, err
	}
	now := c.cfg.Clock.Now()
	status, recheck, err := Compute(pdb, pods, c.scale, now)
	if err != nil {
		c.cfg.Recorder.Event(pdb, corev1.EventTypeWarning, "CalculateExpectedPodCountFailed", err.Error())
		return 0, c.failSafe(ctx, pdb, err)
	}
	if err := c.writeStatus(ctx, pdb, status); err != nil {
		return 0, err
	}
	if recheck.IsZero() {
		return 0, nil
	}
	return recheck.Sub(now) + 10*time.Millisecond, nil
}

// failSafe allows no disruptions when the status cannot be computed.
func (c *Controller) failSafe(ctx context.Context, pdb *policyv1.PodDisruptionBudget, cause error) error {
	st := *pdb.Status.DeepCopy()
	st.DisruptionsAllowed = 0
	apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: policyv1.DisruptionAllowedCondition,
		Status: metav1.ConditionFalse, Reason: policyv1.SyncFailedReason, Message: cause.Error(), ObservedGeneration: st.ObservedGeneration})
	if err := c.writeStatus(ctx, pdb, st); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func (c *Controller) writeStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget, st policyv1.PodDisruptionBudgetStatus) error {
	if equality.Semantic.DeepEqual(pdb.Status, st) {
		return nil
	}
	upd := pdb.DeepCopy()
	upd.Status = st
	if _, err := c.client.PolicyV1().PodDisruptionBudgets(pdb.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update status of poddisruptionbudget %s/%s: %w", pdb.Namespace, pdb.Name, err)
	}
	return nil
}

// Scale returns the replicas of the workload a controller reference
// names, following a ReplicaSet to the Deployment that controls it; ok is
// false for a kind without scale or a workload that is gone.
type Scale func(ns string, ref *metav1.OwnerReference) (replicas int32, uid types.UID, ok bool)

func (c *Controller) scale(ns string, ref *metav1.OwnerReference) (int32, types.UID, bool) {
	replicas := func(p *int32) int32 {
		if p == nil {
			return 1
		}
		return *p
	}
	if ref.APIVersion != appsv1.SchemeGroupVersion.String() {
		return 0, "", false
	}
	switch ref.Kind {
	case "ReplicaSet":
		rs, err := c.replicaSets.ReplicaSets(ns).Get(ref.Name)
		if err != nil || rs.UID != ref.UID {
			return 0, "", false
		}
		if owner := metav1.GetControllerOfNoCopy(rs); owner != nil && owner.Kind == "Deployment" {
			if n, uid, ok := c.scale(ns, owner); ok {
				return n, uid, true
			}
		}
		return replicas(rs.Spec.Replicas), rs.UID, true
	case "Deployment":
		d, err := c.deployments.Deployments(ns).Get(ref.Name)
		if err != nil || d.UID != ref.UID {
			return 0, "", false
		}
		return replicas(d.Spec.Replicas), d.UID, true
	case "StatefulSet":
		ss, err := c.statefulSets.StatefulSets(ns).Get(ref.Name)
		if err != nil || ss.UID != ref.UID {
			return 0, "", false
		}
		return replicas(ss.Spec.Replicas), ss.UID, true
	}
	return 0, "", false
}

// Compute is the budget's status over the pods its selector matches at
// now; recheck, when not zero, is when a disrupted pod's deletion
// deadline passes and the status may change.
func Compute(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, scale Scale, now time.Time) (st policyv1.PodDisruptionBudgetStatus, recheck time.Time, err error) {
	expected, desired, err := expectedPods(pdb, pods, scale)
	if err != nil {
		return st, recheck, err
	}
	disrupted := map[string]metav1.Time{}
	for _, p := range pods {
		at, ok := pdb.Status.DisruptedPods[p.Name]
		if !ok || p.DeletionTimestamp != nil {
			continue
		}
		if deadline := at.Add(DeletionTimeout); deadline.After(now) {
			disrupted[p.Name] = at
			if recheck.IsZero() || deadline.Before(recheck) {
				recheck = deadline
			}
		}
	}
	var healthy int32
	for _, p := range pods {
		if _, ok := disrupted[p.Name]; ok || p.DeletionTimestamp != nil {
			continue
		}
		if podstate.Ready(p) {
			healthy++
		}
	}
	allowed := healthy - desired
	if expected <= 0 || allowed < 0 {
		allowed = 0
	}
	st = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: healthy,
		DesiredHealthy: desired, ExpectedPods: expected, DisruptionsAllowed: allowed,
		Conditions: append([]metav1.Condition(nil), pdb.Status.Conditions...)}
	if len(disrupted) > 0 {
		st.DisruptedPods = disrupted
	}
	cond := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
		Reason: policyv1.InsufficientPodsReason, ObservedGeneration: pdb.Generation}
	if allowed > 0 {
		cond.Status, cond.Reason = metav1.ConditionTrue, policyv1.SufficientPodsReason
	}
	apimeta.SetStatusCondition(&st.Conditions, cond)
	return st, recheck, nil
}

// expectedPods is upstream's count: an integer minAvailable is met over
// the matching pods; a percentage, or maxUnavailable, is taken of the
// summed scale of the pods' controllers.
func expectedPods(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, scale Scale) (expected, desired int32, err error) {
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		if expected, err = expectedScale(pdb.Namespace, pods, scale); err != nil {
			return 0, 0, err
		}
		maxUnavailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, max(0, expected-int32(maxUnavailable)), nil
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MinAvailable.Type == intstr.Int:
		return int32(len(pods)), pdb.Spec.MinAvailable.IntVal, nil
	case pdb.Spec.MinAvailable != nil:
		if expected, err = expectedScale(pdb.Namespace, pods, scale); err != nil {
			return 0, 0, err
		}
		minAvailable, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, int32(minAvailable), nil
	}
	return 0, 0, nil
}

func expectedScale(ns string, pods []*corev1.Pod, scale Scale) (int32, error) {
	seen := map[types.UID]int32{}
	for _, p := range pods {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil {
			return 0, fmt.Errorf("found no controller ref for pod %q", p.Name)
		}
		n, uid, ok := scale(ns, ref)
		if !ok {
			return 0, fmt.Errorf("found no controllers with a scale for pod %q (controller %s %s)", p.Name, ref.Kind, ref.Name)
		}
		seen[uid] = n
	}
	var sum int32
	for _, n := range seen {
		sum += n
	}
	return sum, nil
}
