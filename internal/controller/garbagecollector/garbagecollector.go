// Package garbagecollector deletes objects whose owners are gone and
// carries out the three deletion propagation policies: background (the
// owner goes first, its dependents after), foreground (an owner with the
// foregroundDeletion finalizer waits until its blocking dependents are
// gone) and orphan (an owner with the orphan finalizer first strips its
// owner references from its dependents). It watches object metadata only,
// over every resource discovery lists.
package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/controller/loop"
)

// ownerIndex indexes objects by the UIDs of their owners.
const ownerIndex = "skiff.sh/owner-uid"

// ignored resources are never collected (as upstream: events).
var ignored = map[schema.GroupResource]bool{
	{Group: "", Resource: "events"}:              true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// Resource is one kind of object the collector watches.
type Resource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// Config configures the collector.
type Config struct {
	// Metadata reads, patches and deletes object metadata.
	Metadata metadata.Interface
	// Discovery lists the resources to watch (unless Resources is set).
	Discovery discovery.DiscoveryInterface
	// Resources, when set, replaces discovery.
	Resources []Resource
	// Logger receives the collector's logs; default slog.Default().
	Logger *slog.Logger
	// Workers is the number of objects processed at once (default 10).
	Workers int
}

type watched struct {
	Resource
	informer cache.SharedIndexInformer
}

// Collector is the garbage collector.
type Collector struct {
	cfg     Config
	client  metadata.Interface
	log     *slog.Logger
	loop    *loop.Loop
	factory metadatainformer.SharedInformerFactory
	byGVR   map[schema.GroupVersionResource]*watched
	byGK    map[schema.GroupKind]*watched
	list    []*watched
}

// New builds the collector; Run discovers the resources and starts.
func New(cfg Config) *Collector {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers == 0 {
		cfg.Workers = 10
	}
	g := &Collector{cfg: cfg, client: cfg.Metadata, log: cfg.Logger,
		byGVR: map[schema.GroupVersionResource]*watched{}, byGK: map[schema.GroupKind]*watched{}}
	g.loop = loop.New("garbagecollector", g, cfg.Logger)
	return g
}

// Run watches the resources and collects garbage until ctx ends.
func (g *Collector) Run(ctx context.Context) error {
	resources := g.cfg.Resources
	if resources == nil {
		var err error
		if resources, err = g.discover(ctx); err != nil {
			return err
		}
	}
	if err := g.watch(resources); err != nil {
		return err
	}
	g.factory.Start(ctx.Done())
	defer g.factory.Shutdown()
	for gvr, ok := range g.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("garbage collector: cache of %s did not sync: %w", gvr, context.Cause(ctx))
		}
	}
	g.log.Info("garbage collector synced", "resources", len(resources))
	g.loop.Run(ctx, g.cfg.Workers)
	return nil
}

// discover lists the resources that can be listed, watched and deleted,
// retrying until discovery answers.
func (g *Collector) discover(ctx context.Context) ([]Resource, error) {
	for {
		lists, err := g.cfg.Discovery.ServerPreferredResources()
		if err == nil || len(lists) > 0 {
			return resourcesOf(lists), nil
		}
		g.log.Warn("garbage collector: discovery failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("garbage collector: discovery: %w", errors.Join(err, ctx.Err()))
		case <-time.After(time.Second):
		}
	}
}

func resourcesOf(lists []*metav1.APIResourceList) []Resource {
	var out []Resource
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || ignored[gv.WithResource(r.Name).GroupResource()] {
				continue
			}
			if !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			out = append(out, Resource{GVR: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced})
		}
	}
	return out
}

// watch sets up a metadata informer per resource (not started).
func (g *Collector) watch(resources []Resource) error {
	g.factory = metadatainformer.NewSharedInformerFactory(g.client, 0)
	for _, r := range resources {
		inf := g.factory.ForResource(r.GVR).Informer()
		if err := inf.AddIndexers(cache.Indexers{ownerIndex: ownerUIDs}); err != nil {
			return fmt.Errorf("garbage collector: index %s: %w", r.GVR, err)
		}
		w := &watched{Resource: r, informer: inf}
		if _, err := inf.AddEventHandler(g.handler(w)); err != nil {
			return fmt.Errorf("garbage collector: handler %s: %w", r.GVR, err)
		}
		g.byGVR[r.GVR] = w
		g.byGK[schema.GroupKind{Group: r.GVR.Group, Kind: r.Kind}] = w
		g.list = append(g.list, w)
	}
	return nil
}

func ownerUIDs(obj any) ([]string, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return nil, nil
	}
	out := make([]string, len(m.OwnerReferences))
	for i, r := range m.OwnerReferences {
		out[i] = string(r.UID)
	}
	return out, nil
}

// key names an object for the queue: group|version|resource|namespace|name.
func key(gvr schema.GroupVersionResource, ns, name string) string {
	return gvr.Group + "|" + gvr.Version + "|" + gvr.Resource + "|" + ns + "|" + name
}

func parseKey(k string) (schema.GroupVersionResource, string, string, bool) {
	p := strings.Split(k, "|")
	if len(p) != 5 {
		return schema.GroupVersionResource{}, "", "", false
	}
	return schema.GroupVersionResource{Group: p[0], Version: p[1], Resource: p[2]}, p[3], p[4], true
}

func metaOf(obj any) *metav1.PartialObjectMetadata {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	m, _ := obj.(*metav1.PartialObjectMetadata)
	return m
}

// interesting reports whether the collector has work on m.
func interesting(m *metav1.PartialObjectMetadata) bool {
	return len(m.OwnerReferences) > 0 ||
		(m.DeletionTimestamp != nil && (has(m.Finalizers, metav1.FinalizerOrphanDependents) || has(m.Finalizers, metav1.FinalizerDeleteDependents)))
}

func has(list []string, s string) bool { return slices.Contains(list, s) }

func (g *Collector) handler(w *watched) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if m := metaOf(obj); m != nil && interesting(m) {
				g.loop.Add(key(w.GVR, m.Namespace, m.Name))
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, cur := metaOf(oldObj), metaOf(newObj)
			if old == nil || cur == nil {
				return
			}
			if (old.DeletionTimestamp == nil) == (cur.DeletionTimestamp == nil) &&
				slices.Equal(old.Finalizers, cur.Finalizers) && refsEqual(old.OwnerReferences, cur.OwnerReferences) {
				return // heartbeats and status: nothing for the collector
			}
			if interesting(cur) {
				g.loop.Add(key(w.GVR, cur.Namespace, cur.Name))
			}
			// A changed or removed reference may unblock a waiting owner.
			g.enqueueOwners(old)
			g.enqueueOwners(cur)
		},
		DeleteFunc: func(obj any) {
			m := metaOf(obj)
			if m == nil {
				return
			}
			g.enqueueOwners(m)
			g.enqueueDependents(m.UID)
		},
	}
}

func refsEqual(a, b []metav1.OwnerReference) bool {
	return slices.EqualFunc(a, b, func(x, y metav1.OwnerReference) bool {
		return x.UID == y.UID && ptrEq(x.BlockOwnerDeletion, y.BlockOwnerDeletion)
	})
}

func ptrEq(a, b *bool) bool { return (a != nil && *a) == (b != nil && *b) }

func (g *Collector) enqueueOwners(m *metav1.PartialObjectMetadata) {
	for _, ref := range m.OwnerReferences {
		if w, ns, ok := g.resolve(ref, m.Namespace); ok {
			g.loop.Add(key(w.GVR, ns, ref.Name))
		}
	}
}

func (g *Collector) enqueueDependents(uid types.UID) {
	for _, d := range g.dependents(uid) {
		g.loop.Add(key(d.w.GVR, d.m.Namespace, d.m.Name))
	}
}

type dependent struct {
	w *watched
	m *metav1.PartialObjectMetadata
}

// dependents are the cached objects that name uid as an owner.
func (g *Collector) dependents(uid types.UID) []dependent {
	var out []dependent
	for _, w := range g.list {
		objs, err := w.informer.GetIndexer().ByIndex(ownerIndex, string(uid))
		if err != nil {
			continue
		}
		for _, o := range objs {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				out = append(out, dependent{w: w, m: m})
			}
		}
	}
	return out
}

// resolve finds the resource and namespace an owner reference points at.
func (g *Collector) resolve(ref metav1.OwnerReference, depNamespace string) (*watched, string, bool) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, "", false
	}
	w, ok := g.byGK[schema.GroupKind{Group: gv.Group, Kind: ref.Kind}]
	if !ok {
		return nil, "", false
	}
	if !w.Namespaced {
		return w, "", true
	}
	if depNamespace == "" {
		// A cluster-scoped dependent cannot have a namespaced owner: the
		// reference is unresolvable and never makes the dependent garbage.
		return nil, "", false
	}
	return w, depNamespace, true
}

// ownerState is what the collector knows of an owner.
type ownerState int

const (
	solid   ownerState = iota // exists and is not waiting for its dependents
	absent                    // gone, or replaced by an object with another UID
	waiting                   // being deleted in the foreground
)

// owner looks an owner up in the cache, and confirms with the API server
// before calling it absent (the cache may not have seen it yet).
func (g *Collector) owner(ctx context.Context, ref metav1.OwnerReference, depNamespace string) (ownerState, error) {
	w, ns, ok := g.resolve(ref, depNamespace)
	if !ok {
		return solid, nil
	}
	if o, exists, err := w.informer.GetIndexer().GetByKey(cacheKey(ns, ref.Name)); err == nil && exists {
		if m, ok := o.(*metav1.PartialObjectMetadata); ok && m.UID == ref.UID {
			return stateOf(m), nil
		}
	}
	m, err := g.client.Resource(w.GVR).Namespace(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return absent, nil
	}
	if err != nil {
		return solid, fmt.Errorf("get owner %s %s/%s: %w", ref.Kind, ns, ref.Name, err)
	}
	if m.UID != ref.UID {
		return absent, nil
	}
	return stateOf(m), nil
}

func stateOf(m *metav1.PartialObjectMetadata) ownerState {
	if m.DeletionTimestamp != nil && has(m.Finalizers, metav1.FinalizerDeleteDependents) {
		return waiting
	}
	return solid
}

func cacheKey(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// Reconcile processes one object, as an owner being deleted with the
// orphan or foreground policy, or as a dependent whose owners may be gone.
func (g *Collector) Reconcile(ctx context.Context, k string) (time.Duration, error) {
	gvr, ns, name, ok := parseKey(k)
	if !ok {
		return 0, nil
	}
	w, ok := g.byGVR[gvr]
	if !ok {
		return 0, nil
	}
	o, exists, err := w.informer.GetIndexer().GetByKey(cacheKey(ns, name))
	if err != nil || !exists {
		return 0, err
	}
	m, ok := o.(*metav1.PartialObjectMetadata)
	if !ok {
		return 0, nil
	}
	if m.DeletionTimestamp != nil {
		switch {
		case has(m.Finalizers, metav1.FinalizerOrphanDependents):
			return 0, g.orphan(ctx, w, m)
		case has(m.Finalizers, metav1.FinalizerDeleteDependents):
			return 0, g.deleteDependentsFirst(ctx, w, m)
		}
		return 0, nil
	}
	if len(m.OwnerReferences) == 0 {
		return 0, nil
	}
	var solidN int
	var remove []types.UID
	waitingN := 0
	for _, ref := range m.OwnerReferences {
		st, err := g.owner(ctx, ref, m.Namespace)
		if err != nil {
			return 0, err
		}
		switch st {
		case solid:
			solidN++
		case absent:
			remove = append(remove, ref.UID)
		case waiting:
			waitingN++
			remove = append(remove, ref.UID)
		}
	}
	switch {
	case solidN > 0:
		if len(remove) == 0 {
			return 0, nil
		}
		// Another owner keeps it alive: only drop the references to the
		// owners that are gone or going.
		return 0, g.removeRefs(ctx, w, m, remove)
	case waitingN > 0 && len(g.dependents(m.UID)) > 0:
		// An owner waits for it, and it has dependents of its own: delete
		// it in the foreground too, so the chain goes in order.
		return 0, g.delete(ctx, w, m, metav1.DeletePropagationForeground)
	}
	policy := metav1.DeletePropagationBackground
	switch {
	case has(m.Finalizers, metav1.FinalizerOrphanDependents):
		policy = metav1.DeletePropagationOrphan
	case has(m.Finalizers, metav1.FinalizerDeleteDependents):
		policy = metav1.DeletePropagationForeground
	}
	return 0, g.delete(ctx, w, m, policy)
}

func (g *Collector) delete(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, policy metav1.DeletionPropagation) error {
	uid := m.UID
	err := g.client.Resource(w.GVR).Namespace(m.Namespace).Delete(ctx, m.Name,
		metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete %s %s/%s: %w", w.GVR.Resource, m.Namespace, m.Name, err)
	}
	if err == nil {
		g.log.Debug("garbage collected", "resource", w.GVR.String(), "namespace", m.Namespace, "name", m.Name, "propagation", policy)
	}
	return nil
}

// orphan strips the owner's references from its dependents, then removes
// the orphan finalizer so that the owner goes.
func (g *Collector) orphan(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata) error {
	var errs []error
	for _, d := range g.dependents(m.UID) {
		if err := g.removeRefs(ctx, d.w, d.m, []types.UID{m.UID}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return g.removeFinalizer(ctx, w, m, metav1.FinalizerOrphanDependents)
}

// deleteDependentsFirst deletes an owner's dependents and removes the
// foregroundDeletion finalizer once none that blocks it is left.
func (g *Collector) deleteDependentsFirst(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata) error {
	blocking := 0
	for _, d := range g.dependents(m.UID) {
		if d.m.DeletionTimestamp == nil {
			g.loop.Add(key(d.w.GVR, d.m.Namespace, d.m.Name))
		}
		for _, ref := range d.m.OwnerReferences {
			if ref.UID == m.UID && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
				blocking++
				break
			}
		}
	}
	if blocking > 0 {
		// The dependents' deletions enqueue this owner again.
		return nil
	}
	return g.removeFinalizer(ctx, w, m, metav1.FinalizerDeleteDependents)
}

type refPatch struct {
	Metadata struct {
		OwnerReferences []map[string]string `json:"ownerReferences"`
		UID             types.UID           `json:"uid"`
	} `json:"metadata"`
}

// removeRefs deletes the owner references to uids from m.
func (g *Collector) removeRefs(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, uids []types.UID) error {
	var p refPatch
	p.Metadata.UID = m.UID
	for _, u := range uids {
		p.Metadata.OwnerReferences = append(p.Metadata.OwnerReferences, map[string]string{"$patch": "delete", "uid": string(u)})
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = g.client.Resource(w.GVR).Namespace(m.Namespace).Patch(ctx, m.Name, types.StrategicMergePatchType, data, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("remove owner references from %s %s/%s: %w", w.GVR.Resource, m.Namespace, m.Name, err)
	}
	return nil
}

type finalizerPatch struct {
	Metadata struct {
		Finalizers      []string `json:"finalizers"`
		ResourceVersion string   `json:"resourceVersion"`
	} `json:"metadata"`
}

// removeFinalizer removes finalizer f from m, guarded by its resourceVersion.
func (g *Collector) removeFinalizer(ctx context.Context, w *watched, m *metav1.PartialObjectMetadata, f string) error {
	var p finalizerPatch
	p.Metadata.ResourceVersion = m.ResourceVersion
	p.Metadata.Finalizers = []string{}
	for _, x := range m.Finalizers {
		if x != f {
			p.Metadata.Finalizers = append(p.Metadata.Finalizers, x)
		}
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = g.client.Resource(w.GVR).Namespace(m.Namespace).Patch(ctx, m.Name, types.MergePatchType, data, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer %s from %s %s/%s: %w", f, w.GVR.Resource, m.Namespace, m.Name, err)
	}
	return nil
}
