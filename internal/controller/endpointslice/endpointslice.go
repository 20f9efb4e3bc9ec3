// Package endpointslice is the EndpointSlice controller: every Service
// with a selector gets discovery.k8s.io/v1 EndpointSlices, owned by the
// Service, holding at most MaxEndpointsPerSlice endpoints each, one set
// per IP family, with each pod's ready, serving and terminating
// conditions, node and zone.
package endpointslice

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/loop"
	"github.com/skiff-sh/skiff/internal/controller/ownership"
	"github.com/skiff-sh/skiff/internal/controller/podstate"
	"github.com/skiff-sh/skiff/internal/controller/servicepods"
)

// ControllerName is the endpointslice.kubernetes.io/managed-by value of
// the slices this controller manages; MaxEndpointsPerSlice is upstream's
// default --max-endpoints-per-slice.
const (
	ControllerName       = "endpointslice-controller.k8s.io"
	MaxEndpointsPerSlice = 100
)

var serviceKind = corev1.SchemeGroupVersion.WithKind("Service")

// Config configures the controller.
type Config struct {
	// Client writes EndpointSlices.
	Client kubernetes.Interface
	// Factory provides the Service, pod, node and EndpointSlice
	// informers; the caller starts it.
	Factory informers.SharedInformerFactory
	// Logger receives the controller's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of Services synced at once (default 5).
	Workers int
	// MaxEndpointsPerSlice bounds a slice (default 100).
	MaxEndpointsPerSlice int
}

// Controller is the EndpointSlice controller.
type Controller struct {
	cfg      Config
	client   kubernetes.Interface
	loop     *loop.Loop
	services corelisters.ServiceLister
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced
}

// New builds the controller and registers its informer handlers.
func New(cfg Config) (*Controller, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers == 0 {
		cfg.Workers = 5
	}
	if cfg.MaxEndpointsPerSlice == 0 {
		cfg.MaxEndpointsPerSlice = MaxEndpointsPerSlice
	}
	svcInf := cfg.Factory.Core().V1().Services()
	podInf := cfg.Factory.Core().V1().Pods()
	nodeInf := cfg.Factory.Core().V1().Nodes()
	esInf := cfg.Factory.Discovery().V1().EndpointSlices()
	c := &Controller{cfg: cfg, client: cfg.Client,
		services: svcInf.Lister(), pods: podInf.Lister(), nodes: nodeInf.Lister(), slices: esInf.Lister(),
		synced: []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced,
			nodeInf.Informer().HasSynced, esInf.Informer().HasSynced}}
	c.loop = loop.New("endpointslice", c, cfg.Logger)
	var errs []error
	_, err := svcInf.Informer().AddEventHandler(c.loop.Handler())
	errs = append(errs, err)
	_, err = podInf.Informer().AddEventHandler(servicepods.PodHandler(c.services, c.loop.Add))
	errs = append(errs, err)
	_, err = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: c.onNodeUpdate,
	})
	errs = append(errs, err)
	// Slices changed or deleted by others are put back.
	_, err = esInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, cur any) { c.onSlice(cur) },
		DeleteFunc: c.onSlice,
	})
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("endpointslice controller: handlers: %w", err)
	}
	return c, nil
}

// Run waits for the informers to sync and reconciles until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("endpointslice controller: caches did not sync: %w", context.Cause(ctx))
	}
	c.loop.Run(ctx, c.cfg.Workers)
	return nil
}

// onNodeUpdate resyncs every Service when a node changes zone.
func (c *Controller) onNodeUpdate(oldObj, newObj any) {
	old, cur := oldObj.(*corev1.Node), newObj.(*corev1.Node)
	if old.Labels[corev1.LabelTopologyZone] == cur.Labels[corev1.LabelTopologyZone] {
		return
	}
	svcs, _ := c.services.List(labels.Everything())
	for _, s := range svcs {
		c.loop.Add(s.Namespace + "/" + s.Name)
	}
}

func (c *Controller) onSlice(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || es.Labels[discoveryv1.LabelManagedBy] != ControllerName || es.Labels[discoveryv1.LabelServiceName] == "" {
		return
	}
	c.loop.Add(es.Namespace + "/" + es.Labels[discoveryv1.LabelServiceName])
}

// Reconcile syncs the EndpointSlices of the Service namespace/name.
func (c *Controller) Reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	existing, err := c.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: ControllerName}))
	if err != nil {
		return 0, err
	}
	svc, err := c.services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	var want []*discoveryv1.EndpointSlice
	if err == nil && servicepods.Selects(svc) {
		pods, err := servicepods.Pods(c.pods, svc)
		if err != nil {
			return 0, err
		}
		want = Desired(svc, pods, c.zone, c.cfg.MaxEndpointsPerSlice)
	}
	// Without a Service (or its selector) every slice goes: the garbage
	// collector would delete them too, but only once it runs.
	creates, updates, deletes := Plan(existing, want)
	var errs []error
	for _, es := range creates {
		_, err := c.client.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
		if err != nil && !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			errs = append(errs, fmt.Errorf("create endpointslice for %s: %w", key, err))
		}
	}
	for _, es := range updates {
		if _, err := c.client.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("update endpointslice %s/%s: %w", ns, es.Name, err))
		}
	}
	for _, es := range deletes {
		err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, es.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &es.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete endpointslice %s/%s: %w", ns, es.Name, err))
		}
	}
	return 0, errors.Join(errs...)
}

func (c *Controller) zone(node string) string {
	n, err := c.nodes.Get(node)
	if err != nil {
		return ""
	}
	return n.Labels[corev1.LabelTopologyZone]
}

// Desired computes the slices of svc over the pods it selects: per IP
// family, endpoints grouped by the ports they resolve, sorted by address
// and cut into slices of at most max; a Service without endpoints gets
// one empty slice. zone names a node's zone.
func Desired(svc *corev1.Service, pods []*corev1.Pod, zone func(node string) string, max int) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	families := servicepods.Families(svc)
	for _, fam := range families {
		v6 := fam == corev1.IPv6Protocol
		at := discoveryv1.AddressTypeIPv4
		if v6 {
			at = discoveryv1.AddressTypeIPv6
		}
		type group struct {
			ports []discoveryv1.EndpointPort
			eps   []discoveryv1.Endpoint
		}
		groups := map[string]*group{}
		for _, pod := range pods {
			if !servicepods.Include(pod, true) {
				continue
			}
			ip := servicepods.IP(pod, v6)
			if ip == "" {
				continue
			}
			ports := make([]discoveryv1.EndpointPort, 0, len(svc.Spec.Ports))
			for i := range svc.Spec.Ports {
				sp := &svc.Spec.Ports[i]
				n, ok := servicepods.Port(sp, pod)
				if !ok {
					continue
				}
				proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
				ports = append(ports, discoveryv1.EndpointPort{Name: &sp.Name, Port: &n, Protocol: &proto, AppProtocol: sp.AppProtocol})
			}
			if len(ports) == 0 && len(svc.Spec.Ports) > 0 {
				continue
			}
			k := portsKey(ports)
			g := groups[k]
			if g == nil {
				g = &group{ports: ports}
				groups[k] = g
			}
			g.eps = append(g.eps, endpoint(svc, pod, ip, zone))
		}
		for _, k := range slices.Sorted(maps.Keys(groups)) {
			g := groups[k]
			slices.SortFunc(g.eps, func(a, b discoveryv1.Endpoint) int { return cmp.Compare(a.Addresses[0], b.Addresses[0]) })
			for chunk := range slices.Chunk(g.eps, max) {
				out = append(out, newSlice(svc, at, g.ports, chunk))
			}
		}
	}
	if len(out) == 0 {
		at := discoveryv1.AddressTypeIPv4
		if families[0] == corev1.IPv6Protocol {
			at = discoveryv1.AddressTypeIPv6
		}
		out = append(out, newSlice(svc, at, []discoveryv1.EndpointPort{}, nil))
	}
	return out
}

func endpoint(svc *corev1.Service, pod *corev1.Pod, ip string, zone func(string) string) discoveryv1.Endpoint {
	serving := podstate.Ready(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{Addresses: []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}}
	if h := servicepods.Hostname(pod, svc); h != "" {
		ep.Hostname = &h
	}
	if n := pod.Spec.NodeName; n != "" {
		ep.NodeName = &n
		if z := zone(n); z != "" {
			ep.Zone = &z
		}
	}
	return ep
}

func newSlice(svc *corev1.Service, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	l := servicepods.Labels(svc)
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = ControllerName
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{GenerateName: svc.Name + "-", Namespace: svc.Namespace, Labels: l,
			OwnerReferences: []metav1.OwnerReference{ownership.ControllerRef(svc, serviceKind)}},
		AddressType: at, Ports: ports, Endpoints: eps}
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(deref(p.Name) + "/" + strconv.Itoa(int(deref(p.Port))) + "/" + string(deref(p.Protocol)) + "/" + deref(p.AppProtocol) + ",")
	}
	return b.String()
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// content is what a slice says, in a form that ignores defaulting
// (nil against empty) so that a written slice compares equal to itself.
func content(es *discoveryv1.EndpointSlice) string {
	var b strings.Builder
	b.WriteString(string(es.AddressType) + "|" + portsKey(es.Ports) + "|")
	for _, k := range slices.Sorted(maps.Keys(es.Labels)) {
		b.WriteString(k + "=" + es.Labels[k] + ",")
	}
	for _, r := range es.OwnerReferences {
		b.WriteString("|owner " + string(r.UID))
	}
	for _, ep := range es.Endpoints {
		c := ep.Conditions
		fmt.Fprintf(&b, "|%v %v %v %v %s %s %s", ep.Addresses, deref(c.Ready), deref(c.Serving), deref(c.Terminating),
			deref(ep.Hostname), deref(ep.NodeName), deref(ep.Zone))
		if r := ep.TargetRef; r != nil {
			b.WriteString(" " + r.Name + " " + string(r.UID))
		}
	}
	return b.String()
}

// Plan matches the existing slices with the wanted ones: a slice that
// already says what one wanted says is kept, the others are rewritten
// in place (same address type) or created, and existing slices left over
// are deleted.
func Plan(existing, want []*discoveryv1.EndpointSlice) (creates, updates, deletes []*discoveryv1.EndpointSlice) {
	have := map[string][]*discoveryv1.EndpointSlice{}
	for _, es := range existing {
		have[content(es)] = append(have[content(es)], es)
	}
	var rest []*discoveryv1.EndpointSlice
	kept := map[*discoveryv1.EndpointSlice]bool{}
	for _, w := range want {
		k := content(w)
		if l := have[k]; len(l) > 0 {
			kept[l[0]] = true
			have[k] = l[1:]
			continue
		}
		rest = append(rest, w)
	}
	var spare []*discoveryv1.EndpointSlice
	for _, es := range existing {
		if !kept[es] {
			spare = append(spare, es)
		}
	}
	for _, w := range rest {
		i := slices.IndexFunc(spare, func(es *discoveryv1.EndpointSlice) bool { return es.AddressType == w.AddressType })
		if i < 0 {
			creates = append(creates, w)
			continue
		}
		upd := spare[i].DeepCopy()
		upd.Labels, upd.OwnerReferences, upd.Ports, upd.Endpoints = w.Labels, w.OwnerReferences, w.Ports, w.Endpoints
		updates = append(updates, upd)
		spare = slices.Delete(spare, i, i+1)
	}
	return creates, updates, spare
}
