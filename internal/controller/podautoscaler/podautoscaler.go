// Package podautoscaler is the horizontal pod autoscaler controller
// (autoscaling/v2): every sync period it reads the resource usage of an
// HPA's target's pods from the metrics API (metrics.k8s.io), computes the
// replica count upstream's algorithm gives, bounds it by the HPA's
// behavior (stabilization windows, scaling policies) and min/max
// replicas, and writes it through the target's scale subresource.
package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/loop"
)

// Defaults, as upstream's kube-controller-manager.
const (
	DefaultSyncPeriod             = 15 * time.Second
	DefaultDownscaleStabilization = 5 * time.Minute
)

// Config configures the controller.
type Config struct {
	// Client reads and writes scales and writes HPA status.
	Client kubernetes.Interface
	// Metrics reads pod usage from the metrics API.
	Metrics metricsclient.Interface
	// Factory provides the informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// SyncPeriod is how often each HPA is synced (default 15s).
	SyncPeriod time.Duration
	// DownscaleStabilization is the scale-down stabilization window of
	// HPAs whose behavior sets none (default 5m).
	DownscaleStabilization time.Duration
	// Tolerance is the usage ratio's dead band (default 0.1).
	Tolerance float64
	// Workers is the number of HPAs synced at once (default 2).
	Workers int
}

// Controller is the HPA controller.
type Controller struct {
	cfg    Config
	client kubernetes.Interface
	loop   *loop.Loop
	hpas   autoscalinglisters.HorizontalPodAutoscalerLister
	pods   corelisters.PodLister
	synced []cache.InformerSynced

	mu      sync.Mutex
	history map[string]*history
}

// New builds the controller and registers its informer handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.Metrics == nil || cfg.Factory == nil {
		return nil, errors.New("podautoscaler: need a client, a metrics client and an informer factory")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Recorder == nil {
		cfg.Recorder = &record.FakeRecorder{}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = DefaultSyncPeriod
	}
	if cfg.DownscaleStabilization <= 0 {
		cfg.DownscaleStabilization = DefaultDownscaleStabilization
	}
	if cfg.Tolerance <= 0 {
		cfg.Tolerance = DefaultTolerance
	}
	hpaInf := cfg.Factory.Autoscaling().V2().HorizontalPodAutoscalers()
	podInf := cfg.Factory.Core().V1().Pods()
	c := &Controller{cfg: cfg, client: cfg.Client, hpas: hpaInf.Lister(), pods: podInf.Lister(),
		synced:  []cache.InformerSynced{hpaInf.Informer().HasSynced, podInf.Informer().HasSynced},
		history: map[string]*history{}}
	c.loop = loop.New("horizontalpodautoscaling", c, cfg.Logger)
	// Syncs are periodic; only a new HPA or a changed spec syncs at once
	// (not the controller's own status writes).
	_, err := hpaInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.loop.Enqueue,
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(*autoscalingv2.HorizontalPodAutoscaler)
			n, ok2 := cur.(*autoscalingv2.HorizontalPodAutoscaler)
			if ok1 && ok2 && o.Generation != n.Generation {
				c.loop.Enqueue(cur)
			}
		},
		DeleteFunc: c.loop.Enqueue,
	})
	if err != nil {
		return nil, fmt.Errorf("podautoscaler: handlers: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("podautoscaler: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile syncs one HPA and asks to be called again a sync period later.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cur, err := c.hpas.HorizontalPodAutoscalers(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.history, key)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	hpa := cur.DeepCopy()
	if err := c.sync(ctx, key, hpa); err != nil {
		return 0, err
	}
	if !equality.Semantic.DeepEqual(cur.Status, hpa.Status) {
		if _, err := c.client.AutoscalingV2().HorizontalPodAutoscalers(ns).UpdateStatus(ctx, hpa, metav1.UpdateOptions{}); err != nil {
			return 0, fmt.Errorf("update status of HPA %s: %w", key, err)
		}
	}
	return c.cfg.SyncPeriod, nil
}

// sync computes and applies the HPA's replica count and fills its status.
// Failures to read the scale or metrics are reported in the status and
// events, and retried on the next sync; an error is returned only for a
// scale update that failed.
func (c *Controller) sync(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	now := c.cfg.Clock.Now()
	ref := hpa.Spec.ScaleTargetRef
	scales, err := c.scales(hpa.Namespace, ref)
	var scale *autoscalingv1.Scale
	if err == nil {
		scale, err = scales.GetScale(ctx, ref.Name, metav1.GetOptions{})
	}
	if err != nil {
		c.cfg.Recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", err.Error())
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: "+err.Error(), now)
		return nil
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale", now)
	current := scale.Spec.Replicas
	minReplicas := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minReplicas = *hpa.Spec.MinReplicas
	}
	var desired int32
	var reason string
	var statuses []autoscalingv2.MetricStatus
	switch {
	case current == 0 && minReplicas != 0:
		desired = 0
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero", now)
	case current > hpa.Spec.MaxReplicas:
		desired, reason = hpa.Spec.MaxReplicas, "Current number of replicas above Spec.MaxReplicas"
	case current < minReplicas:
		desired, reason = minReplicas, "Current number of replicas below Spec.MinReplicas"
	default:
		proposed, metric, st, err := c.replicasForMetrics(ctx, hpa, scale, now)
		statuses = st
		if err != nil {
			c.cfg.Recorder.Event(hpa, corev1.EventTypeWarning, "FailedComputeMetricsReplicas", err.Error())
			hpa.Status.CurrentReplicas = scale.Status.Replicas
			hpa.Status.DesiredReplicas = current
			hpa.Status.CurrentMetrics = statuses
			hpa.Status.ObservedGeneration = &hpa.Generation
			return nil
		}
		c.mu.Lock()
		h := c.history[key]
		if h == nil {
			h = &history{}
			c.history[key] = h
		}
		n := h.normalize(hpa.Spec.Behavior, limits{current: current, desired: proposed, min: minReplicas, max: hpa.Spec.MaxReplicas},
			c.cfg.DownscaleStabilization, now)
		c.mu.Unlock()
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, n.ableReason, n.ableMessage, now)
		limited := corev1.ConditionFalse
		if n.limited {
			limited = corev1.ConditionTrue
		}
		setCondition(hpa, autoscalingv2.ScalingLimited, limited, n.limitReason, n.limitMessage, now)
		desired = n.replicas
		reason = "All metrics below target"
		if desired > current {
			reason = metric + " above target"
		}
	}
	if desired != current {
		scale.Spec.Replicas = desired
		if _, err := scales.UpdateScale(ctx, ref.Name, scale, metav1.UpdateOptions{}); err != nil {
			c.cfg.Recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, reason, err)
			setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: "+err.Error(), now)
			return fmt.Errorf("rescale %s %s: %w", ref.Kind, ref.Name, err)
		}
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", fmt.Sprintf("the HPA controller was able to update the target scale to %d", desired), now)
		c.cfg.Recorder.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, reason)
		c.cfg.Logger.Info("rescaled", "hpa", key, "from", current, "to", desired, "reason", reason)
		c.mu.Lock()
		if h := c.history[key]; h != nil {
			h.record(hpa.Spec.Behavior, current, desired, now)
		}
		c.mu.Unlock()
		t := metav1.NewTime(now)
		hpa.Status.LastScaleTime = &t
	}
	hpa.Status.CurrentReplicas = scale.Status.Replicas
	hpa.Status.DesiredReplicas = desired
	hpa.Status.CurrentMetrics = statuses
	hpa.Status.ObservedGeneration = &hpa.Generation
	return nil
}

// replicasForMetrics is the largest replica count the HPA's metrics
// propose, the name of the metric that proposed it, and each metric's
// current value. A metric that cannot be computed fails the whole when
// every metric fails or the others would scale down.
func (c *Controller) replicasForMetrics(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, scale *autoscalingv1.Scale, now time.Time) (int32, string, []autoscalingv2.MetricStatus, error) {
	current := scale.Spec.Replicas
	if scale.Status.Selector == "" {
		msg := "the HPA target's scale is missing a selector"
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", msg, now)
		return 0, "", nil, errors.New(msg)
	}
	sel, err := labels.Parse(scale.Status.Selector)
	if err != nil {
		msg := fmt.Sprintf("couldn't convert selector into a corresponding internal selector object: %v", err)
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "InvalidSelector", msg, now)
		return 0, "", nil, errors.New(msg)
	}
	pods, err := c.pods.Pods(hpa.Namespace).List(sel)
	if err != nil {
		return 0, "", nil, err
	}
	usage, err := c.podUsage(ctx, hpa.Namespace, sel)
	tol := c.tolerances(hpa.Spec.Behavior)
	var best int32
	var bestName string
	var statuses []autoscalingv2.MetricStatus
	var errs []error
	for _, m := range hpa.Spec.Metrics {
		st, p, merr := func() (autoscalingv2.MetricStatus, proposal, error) {
			if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil {
				return autoscalingv2.MetricStatus{}, proposal{}, fmt.Errorf("unsupported metric source type %q: skiff scales on Resource metrics only", m.Type)
			}
			if err != nil {
				return autoscalingv2.MetricStatus{}, proposal{}, fmt.Errorf("unable to get metrics for resource %s: %w", m.Resource.Name, err)
			}
			t := resourceTarget{resource: m.Resource.Name}
			switch {
			case m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil:
				t.utilization = *m.Resource.Target.AverageUtilization
			case m.Resource.Target.Type == autoscalingv2.AverageValueMetricType && m.Resource.Target.AverageValue != nil:
				t.average = m.Resource.Target.AverageValue.MilliValue()
			default:
				return autoscalingv2.MetricStatus{}, proposal{}, fmt.Errorf("invalid resource metric source: neither a utilization target nor a value target was set")
			}
			p, err := calcReplicas(current, pods, usage[m.Resource.Name], t, tol)
			if err != nil {
				return autoscalingv2.MetricStatus{}, proposal{}, fmt.Errorf("failed to get %s utilization: %w", m.Resource.Name, err)
			}
			cur := autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(p.average, resource.DecimalSI)}
			if t.utilization > 0 {
				cur.AverageUtilization = &p.utilization
			}
			return autoscalingv2.MetricStatus{Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricStatus{Name: m.Resource.Name, Current: cur}}, p, nil
		}()
		if merr != nil {
			errs = append(errs, merr)
			statuses = append(statuses, autoscalingv2.MetricStatus{})
			setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "FailedGetResourceMetric", merr.Error(), now)
			continue
		}
		statuses = append(statuses, st)
		if bestName == "" || p.replicas > best {
			best, bestName = p.replicas, metricName(m)
		}
	}
	if len(errs) == len(hpa.Spec.Metrics) || (len(errs) > 0 && best < current) {
		return 0, "", statuses, fmt.Errorf("invalid metrics (%d invalid out of %d), first error is: %w", len(errs), len(hpa.Spec.Metrics), errs[0])
	}
	setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound",
		"the HPA was able to successfully calculate a replica count from "+bestName, now)
	return best, bestName, statuses, nil
}

// metricName is how events and conditions name a metric.
func metricName(m autoscalingv2.MetricSpec) string {
	if m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
		return string(m.Resource.Name) + " resource utilization (percentage of request)"
	}
	return string(m.Resource.Name) + " resource"
}

// tolerances are the controller's, overridden by the behavior's rules.
func (c *Controller) tolerances(b *autoscalingv2.HorizontalPodAutoscalerBehavior) tolerances {
	t := tolerances{up: c.cfg.Tolerance, down: c.cfg.Tolerance}
	if b != nil && b.ScaleUp != nil && b.ScaleUp.Tolerance != nil {
		t.up = b.ScaleUp.Tolerance.AsApproximateFloat64()
	}
	if b != nil && b.ScaleDown != nil && b.ScaleDown.Tolerance != nil {
		t.down = b.ScaleDown.Tolerance.AsApproximateFloat64()
	}
	return t
}

// podUsage lists the pods' metrics in ns matching sel: per resource, each
// pod's usage summed over its containers in milli-units. A pod missing a
// resource in any container has no figure for it.
func (c *Controller) podUsage(ctx context.Context, ns string, sel labels.Selector) (map[corev1.ResourceName]map[string]int64, error) {
	list, err := c.cfg.Metrics.MetricsV1beta1().PodMetricses(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	out := map[corev1.ResourceName]map[string]int64{}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		out[res] = map[string]int64{}
	}
	for _, pm := range list.Items {
		if len(pm.Containers) == 0 {
			continue
		}
		for res, byPod := range out {
			var sum int64
			ok := true
			for _, ctr := range pm.Containers {
				q, found := ctr.Usage[res]
				if !found {
					ok = false
					break
				}
				sum += q.MilliValue()
			}
			if ok {
				byPod[pm.Name] = sum
			}
		}
	}
	return out, nil
}

// scaler reads and writes one kind's scale subresource; the typed
// clients of the scalable kinds all have these methods.
type scaler interface {
	GetScale(ctx context.Context, name string, opts metav1.GetOptions) (*autoscalingv1.Scale, error)
	UpdateScale(ctx context.Context, name string, s *autoscalingv1.Scale, opts metav1.UpdateOptions) (*autoscalingv1.Scale, error)
}

// scales returns the scale subresource client of the target's kind:
// Deployment, ReplicaSet, StatefulSet (apps) or ReplicationController.
func (c *Controller) scales(ns string, ref autoscalingv2.CrossVersionObjectReference) (scaler, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, fmt.Errorf("invalid API version in scale target reference: %w", err)
	}
	switch {
	case gv.Group == "apps" && ref.Kind == "Deployment":
		return c.client.AppsV1().Deployments(ns), nil
	case gv.Group == "apps" && ref.Kind == "ReplicaSet":
		return c.client.AppsV1().ReplicaSets(ns), nil
	case gv.Group == "apps" && ref.Kind == "StatefulSet":
		return c.client.AppsV1().StatefulSets(ns), nil
	case gv.Group == "" && ref.Kind == "ReplicationController":
		return c.client.CoreV1().ReplicationControllers(ns), nil
	}
	return nil, fmt.Errorf("unable to scale %s %s: skiff scales Deployments, ReplicaSets, StatefulSets and ReplicationControllers", ref.APIVersion, ref.Kind)
}

// setCondition sets a condition, keeping its transition time when its
// status does not change.
func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType, status corev1.ConditionStatus, reason, message string, now time.Time) {
	conds := hpa.Status.Conditions
	for i := range conds {
		if conds[i].Type != typ {
			continue
		}
		if conds[i].Status != status {
			conds[i].LastTransitionTime = metav1.NewTime(now)
		}
		conds[i].Status, conds[i].Reason, conds[i].Message = status, reason, message
		return
	}
	hpa.Status.Conditions = append(conds, autoscalingv2.HorizontalPodAutoscalerCondition{Type: typ, Status: status,
		Reason: reason, Message: message, LastTransitionTime: metav1.NewTime(now)})
}
