// Package endpoints is the Endpoints controller: every Service with a
// selector gets a core/v1 Endpoints object of the same name listing the
// addresses and ports of the pods it selects, ready pods under addresses
// and the others under notReadyAddresses.
package endpoints

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
	"github.com/skiff-sh/skiff/internal/controller/servicepods"
)

// Upstream's label for the Endpoints this controller manages, and the
// most addresses one Endpoints object holds.
const (
	LabelManagedBy = "endpoints.kubernetes.io/managed-by"
	ControllerName = "endpoint-controller"
	MaxAddresses   = 1000
)

// Config configures the controller.
type Config struct {
	// Client writes Endpoints.
	Client kubernetes.Interface
	// Factory provides the Service, pod and Endpoints informers; the
	// caller starts it.
	Factory informers.SharedInformerFactory
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of Services synced at once (default 5).
	Workers int
}

// Controller is the Endpoints controller.
type Controller struct {
	cfg       Config
	client    kubernetes.Interface
	loop      *loop.Loop
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	synced    []cache.InformerSynced
}

// New builds the controller and registers its informer handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers == 0 {
		cfg.Workers = 5
	}
	svcInf := cfg.Factory.Core().V1().Services()
	podInf := cfg.Factory.Core().V1().Pods()
	epInf := cfg.Factory.Core().V1().Endpoints()
	c := &Controller{cfg: cfg, client: cfg.Client,
		services: svcInf.Lister(), pods: podInf.Lister(), endpoints: epInf.Lister(),
		synced: []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, epInf.Informer().HasSynced}}
	c.loop = loop.New("endpoints", c, cfg.Logger)
	if _, err := svcInf.Informer().AddEventHandler(c.loop.Handler()); err != nil {
		return nil, fmt.Errorf("endpoints controller: service handler: %w", err)
	}
	if _, err := podInf.Informer().AddEventHandler(servicepods.PodHandler(c.services, c.loop.Add)); err != nil {
		return nil, fmt.Errorf("endpoints controller: pod handler: %w", err)
	}
	// Endpoints changed or deleted by others are put back.
	if _, err := epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, cur any) { c.loop.Enqueue(cur) },
		DeleteFunc: c.loop.Enqueue,
	}); err != nil {
		return nil, fmt.Errorf("endpoints controller: endpoints handler: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("endpoints controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// Reconcile syncs the Endpoints of the Service namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cur, err := c.endpoints.Endpoints(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if apierrors.IsNotFound(err) {
		cur = nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if apierrors.IsNotFound(err) || !servicepods.Selects(svc) {
		// Upstream deletes the Endpoints of a deleted Service; ones it
		// labelled as its own also go when the selector does (others are
		// the user's, for a Service without selector).
		if cur == nil || (svc != nil && cur.Labels[LabelManagedBy] != ControllerName) {
			return 0, nil
		}
		err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &cur.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("delete endpoints %s: %w", key, err)
		}
		return 0, nil
	}
	pods, err := servicepods.Pods(c.pods, svc)
	if err != nil {
		return 0, err
	}
	want := Desired(svc, pods)
	if cur != nil && equality.Semantic.DeepEqual(cur.Subsets, want.Subsets) &&
		equality.Semantic.DeepEqual(cur.Labels, want.Labels) && cur.Annotations[corev1.EndpointsOverCapacity] == want.Annotations[corev1.EndpointsOverCapacity] {
		return 0, nil
	}
	if cur == nil {
		_, err = c.client.CoreV1().Endpoints(ns).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return 0, nil
		}
	} else {
		upd := cur.DeepCopy()
		upd.Subsets, upd.Labels = want.Subsets, want.Labels
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		delete(upd.Annotations, corev1.EndpointsOverCapacity)
		if v, ok := want.Annotations[corev1.EndpointsOverCapacity]; ok {
			upd.Annotations[corev1.EndpointsOverCapacity] = v
		}
		_, err = c.client.CoreV1().Endpoints(ns).Update(ctx, upd, metav1.UpdateOptions{})
	}
	if err != nil {
		return 0, fmt.Errorf("write endpoints %s: %w", key, err)
	}
	return 0, nil
}

// Desired computes the Endpoints of svc over the pods it selects.
func Desired(svc *corev1.Service, pods []*corev1.Pod) *corev1.Endpoints {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace,
		Labels: servicepods.Labels(svc)}}
	ep.Labels[LabelManagedBy] = ControllerName
	v6 := servicepods.Families(svc)[0] == corev1.IPv6Protocol
	type group struct {
		ports           []corev1.EndpointPort
		ready, notReady []corev1.EndpointAddress
	}
	groups := map[string]*group{}
	total := 0
	for _, pod := range pods {
		if !servicepods.Include(pod, svc.Spec.PublishNotReadyAddresses) {
			continue
		}
		ip := servicepods.IP(pod, v6)
		if ip == "" {
			continue
		}
		addr := corev1.EndpointAddress{IP: ip, Hostname: servicepods.Hostname(pod, svc),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}}
		if pod.Spec.NodeName != "" {
			addr.NodeName = &pod.Spec.NodeName
		}
		ports := make([]corev1.EndpointPort, 0, len(svc.Spec.Ports))
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			n, ok := servicepods.Port(sp, pod)
			if !ok {
				continue
			}
			ports = append(ports, corev1.EndpointPort{Name: sp.Name, Port: n, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol})
		}
		// Without ports only a headless Service lists addresses.
		if len(ports) == 0 && (len(svc.Spec.Ports) > 0 || svc.Spec.ClusterIP != corev1.ClusterIPNone) {
			continue
		}
		slices.SortFunc(ports, func(a, b corev1.EndpointPort) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
		})
		var k strings.Builder
		for _, p := range ports {
			k.WriteString(p.Name + "/" + strconv.Itoa(int(p.Port)) + "/" + string(p.Protocol) + ",")
		}
		g := groups[k.String()]
		if g == nil {
			g = &group{ports: ports}
			groups[k.String()] = g
		}
		total++
		if podstate.Ready(pod) || svc.Spec.PublishNotReadyAddresses {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	byIP := func(a, b corev1.EndpointAddress) int {
		return cmp.Or(cmp.Compare(a.IP, b.IP), cmp.Compare(a.TargetRef.Name, b.TargetRef.Name))
	}
	budget := MaxAddresses
	for _, k := range keys {
		g := groups[k]
		slices.SortFunc(g.ready, byIP)
		slices.SortFunc(g.notReady, byIP)
		// Over capacity, ready addresses are kept first.
		g.ready = g.ready[:min(len(g.ready), budget)]
		budget -= len(g.ready)
		g.notReady = g.notReady[:min(len(g.notReady), budget)]
		budget -= len(g.notReady)
		if len(g.ready)+len(g.notReady) == 0 {
			continue
		}
		ss := corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady}
		if len(g.ports) > 0 {
			ss.Ports = g.ports
		}
		ep.Subsets = append(ep.Subsets, ss)
	}
	if total > MaxAddresses {
		ep.Annotations = map[string]string{corev1.EndpointsOverCapacity: "truncated"}
	}
	return ep
}
