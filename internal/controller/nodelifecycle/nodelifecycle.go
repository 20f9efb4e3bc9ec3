// Package nodelifecycle is the node lifecycle controller: it watches each
// node's Lease in kube-node-lease and its Ready condition's heartbeat;
// a node heard from for no longer than the grace period gets its
// conditions set to Unknown, its pods marked not ready and the
// unreachable NoExecute taint (not-ready when the kubelet says Ready=False),
// tainting at a bounded rate; pods that do not tolerate a node's NoExecute
// taints are deleted once their tolerationSeconds run out. The taints go
// when the node is Ready again.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/utils/clock"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
)

// Upstream's defaults and names.
const (
	// DefaultGracePeriod is --node-monitor-grace-period.
	DefaultGracePeriod = 40 * time.Second
	// DefaultEvictionRate is --node-eviction-rate: nodes tainted per second.
	DefaultEvictionRate = 0.1
	// LeaseNamespace holds the nodes' Leases.
	LeaseNamespace = "kube-node-lease"

	reasonUnknown      = "NodeStatusUnknown"
	messageUnknown     = "Kubelet stopped posting node status."
	reasonNeverUpdated = "NodeStatusNeverUpdated"
	messageNeverUpdate = "Kubelet never posted node status."
	podIndex           = "nodelifecycle.nodeName"
)

// kubeletConditions are the node conditions the kubelet posts, which go
// Unknown when it stops.
var kubeletConditions = []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure}

// Config configures the controller.
type Config struct {
	// Client writes nodes and pods.
	Client kubernetes.Interface
	// Factory provides the node, Lease and pod informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Recorder receives events; nil records none.
	Recorder record.EventRecorder
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Clock is injected for tests; default the real clock.
	Clock clock.Clock
	// GracePeriod is how long a node may go unheard before it is
	// unreachable (default 40s).
	GracePeriod time.Duration
	// EvictionRate is how many nodes per second get a NoExecute taint
	// (default 0.1); negative means no limit.
	EvictionRate float64
	// Workers is the number of nodes synced at once (default 2).
	Workers int
}

// Controller is the node lifecycle controller.
type Controller struct {
	cfg     Config
	client  kubernetes.Interface
	log     *slog.Logger
	clock   clock.Clock
	rec     record.EventRecorder
	loop    *loop.Loop
	limiter flowcontrol.RateLimiter
	nodes   corelisters.NodeLister
	leases  coordinationlisters.LeaseLister
	pods    cache.Indexer
	synced  []cache.InformerSynced

	mu     sync.Mutex
	health map[string]*probe
}

// probe is what the controller last heard from a node, and when (by its
// own clock: the node's clock may be off).
type probe struct {
	renew, heartbeat time.Time
	seen             time.Time
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
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.EvictionRate == 0 {
		cfg.EvictionRate = DefaultEvictionRate
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	limiter := flowcontrol.NewFakeAlwaysRateLimiter()
	if cfg.EvictionRate > 0 {
		limiter = flowcontrol.NewTokenBucketRateLimiterWithClock(float32(cfg.EvictionRate), 1, cfg.Clock)
	}
	nodeInf := cfg.Factory.Core().V1().Nodes()
	leaseInf := cfg.Factory.Coordination().V1().Leases()
	podInf := cfg.Factory.Core().V1().Pods()
	c := &Controller{cfg: cfg, client: cfg.Client, log: cfg.Logger, clock: cfg.Clock, rec: cfg.Recorder, limiter: limiter,
		nodes: nodeInf.Lister(), leases: leaseInf.Lister(), pods: podInf.Informer().GetIndexer(),
		synced: []cache.InformerSynced{nodeInf.Informer().HasSynced, leaseInf.Informer().HasSynced, podInf.Informer().HasSynced},
		health: map[string]*probe{}}
	c.loop = loop.New("nodelifecycle", c, cfg.Logger)
	if err := podInf.Informer().AddIndexers(cache.Indexers{podIndex: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("node lifecycle: pod index: %w", err)
	}
	onLease := func(obj any) {
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Namespace == LeaseNamespace {
			c.loop.Add(l.Name)
		}
	}
	onPod := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" && p.DeletionTimestamp == nil && c.troubled(p.Spec.NodeName) {
			c.loop.Add(p.Spec.NodeName)
		}
	}
	var errs []error
	_, err := nodeInf.Informer().AddEventHandler(c.loop.Handler())
	errs = append(errs, err)
	_, err = leaseInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onLease, UpdateFunc: func(_, cur any) { onLease(cur) }})
	errs = append(errs, err)
	_, err = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onPod, UpdateFunc: func(_, cur any) { onPod(cur) }})
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("node lifecycle: handlers: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("node lifecycle: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// troubled reports whether the node has a NoExecute taint or is not Ready,
// so that a pod arriving there needs a look.
func (c *Controller) troubled(name string) bool {
	n, err := c.nodes.Get(name)
	if err != nil {
		return false
	}
	r := condition(n, corev1.NodeReady)
	return (r != nil && r.Status != corev1.ConditionTrue) ||
		slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Effect == corev1.TaintEffectNoExecute })
}

func condition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// observe records what the node's Lease and Ready heartbeat say and
// returns when the controller last heard from the node.
func (c *Controller) observe(n *corev1.Node, lease *coordinationv1.Lease, now time.Time) time.Time {
	var renew, heartbeat time.Time
	if lease != nil && lease.Spec.RenewTime != nil {
		renew = lease.Spec.RenewTime.Time
	}
	// Heartbeats of conditions this controller wrote are not the kubelet's.
	if r := condition(n, corev1.NodeReady); r != nil && r.Reason != reasonUnknown && r.Reason != reasonNeverUpdated {
		heartbeat = r.LastHeartbeatTime.Time
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.health[n.Name]
	if p == nil {
		p = &probe{seen: now}
		c.health[n.Name] = p
	}
	if !renew.Equal(p.renew) || heartbeat.After(p.heartbeat) {
		p.seen = now
	}
	p.renew, p.heartbeat = renew, heartbeat
	return p.seen
}

// Reconcile checks the node named key.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	n, err := c.nodes.Get(key)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.health, key)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	lease, err := c.leases.Leases(LeaseNamespace).Get(key)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if err != nil {
		lease = nil
	}
	now := c.clock.Now()
	seen := c.observe(n, lease, now)
	var requeue time.Duration
	if silent := now.Sub(seen); silent >= c.cfg.GracePeriod {
		if st, changed := UnknownStatus(n, now); changed {
			c.log.Info("node stopped posting status", "node", n.Name, "silent", silent.Round(time.Second))
			upd := n.DeepCopy()
			upd.Status = st
			if _, err := c.client.CoreV1().Nodes().UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
				return 0, fmt.Errorf("set node %s status unknown: %w", n.Name, err)
			}
			c.rec.Eventf(n, corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", n.Name)
			return 0, nil // the update brings the node back here
		}
	} else {
		requeue = c.cfg.GracePeriod - silent + 10*time.Millisecond
	}
	ready := condition(n, corev1.NodeReady)
	if ready != nil && ready.Status == corev1.ConditionUnknown {
		if err := c.markPodsNotReady(ctx, n.Name); err != nil {
			return 0, err
		}
	}
	if wait, updated, err := c.taint(ctx, n, ready, now); err != nil || wait > 0 || updated {
		// An update brings the node back here for its pods.
		return wait, err
	}
	next, err := c.evict(ctx, n, now)
	if err != nil {
		return 0, err
	}
	if next > 0 && (requeue == 0 || next < requeue) {
		requeue = next
	}
	return requeue, nil
}

// UnknownStatus is the node's status with the kubelet's conditions set
// to Unknown (added when the kubelet never posted them); changed is false
// when they already were.
func UnknownStatus(n *corev1.Node, now time.Time) (st corev1.NodeStatus, changed bool) {
	st = *n.Status.DeepCopy()
	for _, t := range kubeletConditions {
		i := slices.IndexFunc(st.Conditions, func(c corev1.NodeCondition) bool { return c.Type == t })
		if i < 0 {
			st.Conditions = append(st.Conditions, corev1.NodeCondition{Type: t, Status: corev1.ConditionUnknown,
				Reason: reasonNeverUpdated, Message: messageNeverUpdate,
				LastHeartbeatTime: n.CreationTimestamp, LastTransitionTime: metav1.NewTime(now)})
			changed = true
			continue
		}
		cond := &st.Conditions[i]
		if cond.Status == corev1.ConditionUnknown {
			continue
		}
		cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, reasonUnknown, messageUnknown
		cond.LastTransitionTime = metav1.NewTime(now)
		changed = true
	}
	return st, changed
}

// WantTaint is the NoExecute taint key a node with this Ready condition
// gets: unreachable when Unknown, not-ready when False, none otherwise.
func WantTaint(ready *corev1.NodeCondition) string {
	switch {
	case ready == nil:
		return ""
	case ready.Status == corev1.ConditionUnknown:
		return corev1.TaintNodeUnreachable
	case ready.Status == corev1.ConditionFalse:
		return corev1.TaintNodeNotReady
	}
	return ""
}

// taint puts the node's NoExecute taint in line with its Ready
// condition; adding one to an untainted node waits for the rate limiter
// (wait > 0: come back then); updated says whether it wrote the node.
func (c *Controller) taint(ctx context.Context, n *corev1.Node, ready *corev1.NodeCondition, now time.Time) (wait time.Duration, updated bool, err error) {
	want := WantTaint(ready)
	ours := func(t corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoExecute && (t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady)
	}
	had := slices.IndexFunc(n.Spec.Taints, ours) >= 0
	if want == "" && !had {
		return 0, false, nil
	}
	if want != "" && slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return ours(t) && t.Key == want }) &&
		len(slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(t corev1.Taint) bool { return !ours(t) })) == 1 {
		return 0, false, nil
	}
	// Swapping one of ours for the other is not rate limited (upstream neither).
	if want != "" && !had && !c.limiter.TryAccept() {
		return time.Duration(float64(time.Second) / c.cfg.EvictionRate), false, nil
	}
	upd := n.DeepCopy()
	upd.Spec.Taints = slices.DeleteFunc(upd.Spec.Taints, ours)
	if want != "" {
		upd.Spec.Taints = append(upd.Spec.Taints, corev1.Taint{Key: want, Effect: corev1.TaintEffectNoExecute, TimeAdded: &metav1.Time{Time: now}})
	}
	if len(upd.Spec.Taints) == 0 {
		upd.Spec.Taints = nil
	}
	if _, err := c.client.CoreV1().Nodes().Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return 0, false, fmt.Errorf("taint node %s: %w", n.Name, err)
	}
	c.log.Info("node taints updated", "node", n.Name, "noExecute", want)
	return 0, true, nil
}

func (c *Controller) podsOn(node string) []*corev1.Pod {
	objs, _ := c.pods.ByIndex(podIndex, node)
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			out = append(out, p)
		}
	}
	return out
}

// markPodsNotReady sets the Ready condition of the node's pods to False:
// nobody vouches for them while the kubelet is silent.
func (c *Controller) markPodsNotReady(ctx context.Context, node string) error {
	var errs []error
	for _, p := range c.podsOn(node) {
		if !podstate.Ready(p) || !podstate.Active(p) {
			continue
		}
		upd := p.DeepCopy()
		cond := podstate.ReadyCondition(upd)
		cond.Status, cond.LastTransitionTime = corev1.ConditionFalse, metav1.NewTime(c.clock.Now())
		if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("mark pod %s/%s not ready: %w", p.Namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// EvictAt is when a pod must leave a node with these NoExecute taints:
// never (ok false) when it tolerates them all for ever, at once when it
// does not tolerate one, else when the first toleration runs out,
// counted from when its taint was added (upstream counts from when its
// taint manager saw the taint, which a restart forgets).
func EvictAt(pod *corev1.Pod, taints []corev1.Taint, now time.Time) (at time.Time, ok bool) {
	for i := range taints {
		t := &taints[i]
		if t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		added := now
		if t.TimeAdded != nil {
			added = t.TimeAdded.Time
		}
		// As upstream, the first toleration matching the taint counts.
		j := slices.IndexFunc(pod.Spec.Tolerations, func(tol corev1.Toleration) bool { return tolerates(&tol, t) })
		tolerated := j >= 0
		var seconds *int64
		if tolerated {
			seconds = pod.Spec.Tolerations[j].TolerationSeconds
		}
		var deadline time.Time
		switch {
		case !tolerated:
			deadline = now
		case seconds == nil:
			continue
		default:
			deadline = added.Add(time.Duration(max(*seconds, 0)) * time.Second)
		}
		if !ok || deadline.Before(at) {
			at, ok = deadline, true
		}
	}
	return at, ok
}

// tolerates reports whether tol matches taint (comparison operators
// aside, which NoExecute taints of the node lifecycle do not use).
func tolerates(tol *corev1.Toleration, taint *corev1.Taint) bool {
	if tol.Effect != "" && tol.Effect != taint.Effect {
		return false
	}
	if tol.Key != "" && tol.Key != taint.Key {
		return false
	}
	switch tol.Operator {
	case corev1.TolerationOpExists:
		return true
	case corev1.TolerationOpEqual, "":
		return tol.Key != "" && tol.Value == taint.Value
	}
	return false
}

// evict deletes the pods whose tolerations of the node's NoExecute taints
// ran out; next is when the next one does.
func (c *Controller) evict(ctx context.Context, n *corev1.Node, now time.Time) (next time.Duration, err error) {
	if !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Effect == corev1.TaintEffectNoExecute }) {
		return 0, nil
	}
	var errs []error
	for _, p := range c.podsOn(n.Name) {
		if p.DeletionTimestamp != nil {
			continue
		}
		at, ok := EvictAt(p, n.Spec.Taints, now)
		if !ok {
			continue
		}
		if at.After(now) {
			if d := at.Sub(now) + 10*time.Millisecond; next == 0 || d < next {
				next = d
			}
			continue
		}
		c.rec.Eventf(p, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", p.Namespace, p.Name)
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, fmt.Errorf("evict pod %s/%s from node %s: %w", p.Namespace, p.Name, n.Name, err))
		}
	}
	return next, errors.Join(errs...)
}
