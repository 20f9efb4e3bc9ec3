// Package serviceaccount is the ServiceAccounts controller: every active
// namespace has a ServiceAccount named "default", recreated when deleted.
package serviceaccount

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/loop"
)

// Name is the ServiceAccount every namespace gets.
const Name = "default"

// Config configures the controller.
type Config struct {
	// Client creates ServiceAccounts.
	Client kubernetes.Interface
	// Factory provides the namespace and ServiceAccount informers; the
	// caller starts it.
	Factory informers.SharedInformerFactory
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of namespaces synced at once (default 1).
	Workers int
}

// Controller is the ServiceAccounts controller.
type Controller struct {
	cfg        Config
	client     kubernetes.Interface
	loop       *loop.Loop
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	synced     []cache.InformerSynced
}

// New builds the controller and registers its informer handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	nsInf := cfg.Factory.Core().V1().Namespaces()
	saInf := cfg.Factory.Core().V1().ServiceAccounts()
	c := &Controller{cfg: cfg, client: cfg.Client, namespaces: nsInf.Lister(), accounts: saInf.Lister(),
		synced: []cache.InformerSynced{nsInf.Informer().HasSynced, saInf.Informer().HasSynced}}
	c.loop = loop.New("serviceaccount", c, cfg.Logger)
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, cur any) { c.loop.Enqueue(cur) },
	}); err != nil {
		return nil, fmt.Errorf("serviceaccount controller: namespace handler: %w", err)
	}
	if _, err := saInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if sa, ok := obj.(*corev1.ServiceAccount); ok && sa.Name == Name {
				c.loop.Add(sa.Namespace)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("serviceaccount controller: serviceaccount handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("serviceaccount controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile creates the default ServiceAccount of the namespace named
// key if it is active and lacks one.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, err := c.namespaces.Get(key)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if ns.Status.Phase == corev1.NamespaceTerminating || ns.DeletionTimestamp != nil {
		return 0, nil
	}
	if _, err := c.accounts.ServiceAccounts(key).Get(Name); err == nil {
		return 0, nil
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: key}}
	_, err = c.client.CoreV1().ServiceAccounts(key).Create(ctx, sa, metav1.CreateOptions{})
	switch {
	case err == nil, apierrors.IsAlreadyExists(err), apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return 0, nil
	default:
		return 0, fmt.Errorf("create serviceaccount %s/%s: %w", key, Name, err)
	}
}
