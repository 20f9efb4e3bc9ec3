// Package rootcacert is the root CA certificate publisher: every active
// namespace has a ConfigMap kube-root-ca.crt whose ca.crt is the cluster
// CA, which pods' kube-api-access volumes project so that they can verify
// the API server (upstream's root-ca-cert-publisher).
package rootcacert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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

// Name is the ConfigMap every namespace gets; Key holds the CA in it.
const (
	Name = "kube-root-ca.crt"
	Key  = "ca.crt"
)

// descriptionAnnotation is what upstream writes on the ConfigMap.
const descriptionAnnotation = "kubernetes.io/description"

const description = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."

// ConfigMap is the kube-root-ca.crt ConfigMap of a namespace.
func ConfigMap(namespace string, caPEM []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: namespace, Annotations: map[string]string{descriptionAnnotation: description}},
		Data:       map[string]string{Key: string(caPEM)}}
}

// Config configures the controller.
type Config struct {
	// Client writes ConfigMaps.
	Client kubernetes.Interface
	// Factory provides the namespace and ConfigMap informers; the caller
	// starts it.
	Factory informers.SharedInformerFactory
	// RootCA is the PEM bundle published (required).
	RootCA []byte
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of namespaces synced at once (default 1).
	Workers int
}

// Controller is the root CA certificate publisher.
type Controller struct {
	cfg        Config
	loop       *loop.Loop
	namespaces corelisters.NamespaceLister
	configMaps corelisters.ConfigMapLister
	synced     []cache.InformerSynced
}

// New builds the controller and registers its informer handlers.
func New(cfg Config) (*Controller, error) {
	if len(cfg.RootCA) == 0 {
		return nil, errors.New("root CA publisher: no CA")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	nsInf := cfg.Factory.Core().V1().Namespaces()
	cmInf := cfg.Factory.Core().V1().ConfigMaps()
	c := &Controller{cfg: cfg, namespaces: nsInf.Lister(), configMaps: cmInf.Lister(),
		synced: []cache.InformerSynced{nsInf.Informer().HasSynced, cmInf.Informer().HasSynced}}
	c.loop = loop.New("root-ca-cert-publisher", c, cfg.Logger)
	if _, err := nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.loop.Enqueue,
		UpdateFunc: func(_, cur any) { c.loop.Enqueue(cur) },
	}); err != nil {
		return nil, fmt.Errorf("root CA publisher: namespace handler: %w", err)
	}
	onConfigMap := func(obj any) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == Name {
			c.loop.Add(cm.Namespace)
		}
	}
	if _, err := cmInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, cur any) { onConfigMap(cur) },
		DeleteFunc: onConfigMap,
	}); err != nil {
		return nil, fmt.Errorf("root CA publisher: configmap handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("root CA publisher: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile makes the namespace named key's kube-root-ca.crt hold the CA.
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
	want := map[string]string{Key: string(c.cfg.RootCA)}
	cur, err := c.configMaps.ConfigMaps(key).Get(Name)
	if apierrors.IsNotFound(err) {
		_, err = c.cfg.Client.CoreV1().ConfigMaps(key).Create(ctx, ConfigMap(key, c.cfg.RootCA), metav1.CreateOptions{})
		switch {
		case err == nil, apierrors.IsAlreadyExists(err), apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			return 0, nil
		default:
			return 0, fmt.Errorf("create configmap %s/%s: %w", key, Name, err)
		}
	}
	if err != nil {
		return 0, err
	}
	if maps.Equal(cur.Data, want) && len(cur.BinaryData) == 0 && cur.Annotations[descriptionAnnotation] == description {
		return 0, nil
	}
	cm := cur.DeepCopy()
	cm.Data, cm.BinaryData = want, nil
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[descriptionAnnotation] = description
	if _, err := c.cfg.Client.CoreV1().ConfigMaps(key).Update(ctx, cm, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return 0, fmt.Errorf("update configmap %s/%s: %w", key, Name, err)
	}
	return 0, nil
}
