// Package namespace is the namespace lifecycle controller: when a
// namespace is deleted it deletes everything the namespace holds, then
// removes the namespace's "kubernetes" finalizer so that it goes away.
package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// finalizerName is the namespace spec finalizer this controller owns.
const finalizerName corev1.FinalizerName = "kubernetes"

// Config configures the controller.
type Config struct {
	// Rest reaches the API server.
	Rest *rest.Config
	// Logger receives the controller's logs.
	Logger *slog.Logger
	// Workers is the number of namespaces cleaned at once (default 2).
	Workers int
}

// Controller deletes the contents of terminating namespaces.
type Controller struct {
	cfg       Config
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	discovery discovery.DiscoveryInterface
	queue     workqueue.TypedRateLimitingInterface[string]
	log       *slog.Logger
}

// New builds the controller.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	cs, err := kubernetes.NewForConfig(cfg.Rest)
	if err != nil {
		return nil, fmt.Errorf("namespace controller client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg.Rest)
	if err != nil {
		return nil, fmt.Errorf("namespace controller dynamic client: %w", err)
	}
	return &Controller{cfg: cfg, client: cs, dynamic: dyn, discovery: cs.Discovery(), log: cfg.Logger,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespace"})}, nil
}

// Run reconciles namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	defer c.queue.ShutDown()
	f := informers.NewSharedInformerFactory(c.client, 0)
	inf := f.Core().V1().Namespaces().Informer()
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return fmt.Errorf("namespace informer: %w", err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return ctx.Err()
	}
	for i := 0; i < c.cfg.Workers; i++ {
		go func() {
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) next(ctx context.Context) bool {
	name, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(name)
	requeue, err := c.Reconcile(ctx, name)
	switch {
	case err != nil:
		c.log.Warn("namespace cleanup failed; will retry", "namespace", name, "err", err)
		c.queue.AddRateLimited(name)
	case requeue > 0:
		c.queue.AddAfter(name, requeue)
	default:
		c.queue.Forget(name)
	}
	return true
}

// Reconcile deletes what a terminating namespace holds and, once nothing
// is left, finalizes it. It returns how soon to look again while content
// remains (0 when done).
func (c *Controller) Reconcile(ctx context.Context, name string) (time.Duration, error) {
	ns, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if ns.DeletionTimestamp == nil || !hasFinalizer(ns) {
		return 0, nil
	}
	resources, err := c.namespacedResources()
	if err != nil {
		return 0, err
	}
	remaining := 0
	for _, gvr := range resources {
		ri := c.dynamic.Resource(gvr).Namespace(name)
		list, err := ri.List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("list %s in %s: %w", gvr.Resource, name, err)
		}
		if len(list.Items) == 0 {
			continue
		}
		remaining += len(list.Items)
		bg := metav1.DeletePropagationBackground
		err = ri.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsMethodNotSupported(err) {
			return 0, fmt.Errorf("delete %s in %s: %w", gvr.Resource, name, err)
		}
	}
	if remaining > 0 {
		return time.Second, nil
	}
	var keep []corev1.FinalizerName
	for _, f := range ns.Spec.Finalizers {
		if f != finalizerName {
			keep = append(keep, f)
		}
	}
	ns.Spec.Finalizers = keep
	if _, err := c.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	c.log.Info("namespace deleted", "namespace", name)
	return 0, nil
}

func hasFinalizer(ns *corev1.Namespace) bool {
	for _, f := range ns.Spec.Finalizers {
		if f == finalizerName {
			return true
		}
	}
	return false
}

// namespacedResources lists the deletable namespaced resources (not
// subresources) the server offers.
func (c *Controller) namespacedResources() ([]schema.GroupVersionResource, error) {
	lists, err := c.discovery.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discover namespaced resources: %w", err)
	}
	var out []schema.GroupVersionResource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("discovery group version %q", l.GroupVersion), err)
		}
		for _, r := range l.APIResources {
			if !hasVerb(r.Verbs, "deletecollection") || !hasVerb(r.Verbs, "list") {
				continue
			}
			out = append(out, gv.WithResource(r.Name))
		}
	}
	return out, nil
}

func hasVerb(verbs []string, v string) bool {
	for _, x := range verbs {
		if x == v {
			return true
		}
	}
	return false
}
