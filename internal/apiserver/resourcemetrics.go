package apiserver

import (
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// DefaultResourceMetricsTTL is how long a reported usage figure is served
// when its agent reports nothing newer.
const DefaultResourceMetricsTTL = 2 * time.Minute

// maxReportBytes bounds the body of a usage report.
const maxReportBytes = 64 << 20

// metricsResources are the resources of metrics.k8s.io/v1beta1. They are
// listed in discovery like the others but held in memory, not in etcd:
// agents POST NodeMetricsList and PodMetricsList reports to the
// collections, and get and list serve the latest figures.
func metricsResources() []*registry.Resource {
	gv := metricsv1beta1.SchemeGroupVersion
	return []*registry.Resource{
		{GVK: gv.WithKind("NodeMetrics"), Plural: "nodes", Singular: "", Verbs: []string{"get", "list"},
			New: func() runtime.Object { return &metricsv1beta1.NodeMetrics{} }, NewList: func() runtime.Object { return &metricsv1beta1.NodeMetricsList{} },
			Strategy: registry.Base{}},
		{GVK: gv.WithKind("PodMetrics"), Plural: "pods", Singular: "", Namespaced: true, Verbs: []string{"get", "list"},
			New: func() runtime.Object { return &metricsv1beta1.PodMetrics{} }, NewList: func() runtime.Object { return &metricsv1beta1.PodMetricsList{} },
			Strategy: registry.Base{}},
	}
}

// resourceMetrics holds the usage the agents last reported.
type resourceMetrics struct {
	ttl time.Duration

	mu    sync.RWMutex
	nodes map[string]reported[*metricsv1beta1.NodeMetrics]
	pods  map[string]reported[*metricsv1beta1.PodMetrics] // by namespace/name
}

// reported is a figure and when the server received it.
type reported[T any] struct {
	m    T
	seen time.Time
}

func newResourceMetrics(ttl time.Duration) *resourceMetrics {
	if ttl <= 0 {
		ttl = DefaultResourceMetricsTTL
	}
	return &resourceMetrics{ttl: ttl, nodes: map[string]reported[*metricsv1beta1.NodeMetrics]{},
		pods: map[string]reported[*metricsv1beta1.PodMetrics]{}}
}

// reportNodes records node figures and drops expired ones.
func (m *resourceMetrics) reportNodes(items []metricsv1beta1.NodeMetrics, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range items {
		nm := items[i].DeepCopy()
		m.nodes[nm.Name] = reported[*metricsv1beta1.NodeMetrics]{nm, now}
	}
	expire(m.nodes, now, m.ttl)
}

// reportPods records pod figures and drops expired ones.
func (m *resourceMetrics) reportPods(items []metricsv1beta1.PodMetrics, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range items {
		pm := items[i].DeepCopy()
		m.pods[pm.Namespace+"/"+pm.Name] = reported[*metricsv1beta1.PodMetrics]{pm, now}
	}
	expire(m.pods, now, m.ttl)
}

func expire[T any](m map[string]reported[T], now time.Time, ttl time.Duration) {
	for k, r := range m {
		if now.Sub(r.seen) > ttl {
			delete(m, k)
		}
	}
}

// serveResourceMetrics serves metrics.k8s.io/v1beta1.
func (s *Server) serveResourceMetrics(w http.ResponseWriter, r *http.Request, ri requestInfo) {
	gr := schema.GroupResource{Group: metricsv1beta1.GroupName, Resource: ri.resource}
	if ri.version != metricsv1beta1.SchemeGroupVersion.Version || (ri.resource != "nodes" && ri.resource != "pods") {
		s.writeError(w, r, apierrors.NewNotFound(gr, ri.name))
		return
	}
	if ri.subresource != "" || (ri.resource == "nodes" && ri.namespace != "") {
		s.writeError(w, r, apierrors.NewNotFound(gr, ri.name))
		return
	}
	switch ri.verb {
	case "get", "list":
		sel := labels.Everything()
		if q := r.URL.Query().Get("labelSelector"); q != "" {
			var err error
			if sel, err = labels.Parse(q); err != nil {
				s.writeError(w, r, apierrors.NewBadRequest(err.Error()))
				return
			}
		}
		var list, first runtime.Object
		if ri.resource == "nodes" {
			l := s.nodeMetrics(ri.name, sel)
			if list = l; len(l.Items) > 0 {
				first = &l.Items[0]
			}
		} else {
			l := s.podMetrics(ri.namespace, ri.name, sel)
			if list = l; len(l.Items) > 0 {
				first = &l.Items[0]
			}
		}
		switch {
		case ri.name == "":
			s.writeObject(w, r, http.StatusOK, list)
		case first == nil:
			s.writeError(w, r, apierrors.NewNotFound(gr, ri.name))
		default:
			s.writeObject(w, r, http.StatusOK, first)
		}
	case "create":
		if ri.name != "" {
			s.writeError(w, r, apierrors.NewMethodNotSupported(gr, "create on a named resource"))
			return
		}
		s.reportResourceMetrics(w, r, ri)
	default:
		s.writeError(w, r, apierrors.NewMethodNotSupported(gr, ri.verb))
	}
}

// reportResourceMetrics takes an agent's report: a NodeMetricsList POSTed
// to nodes or a PodMetricsList POSTed to pods.
func (s *Server) reportResourceMetrics(w http.ResponseWriter, r *http.Request, ri requestInfo) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReportBytes))
	if err != nil {
		s.writeError(w, r, apierrors.NewBadRequest(err.Error()))
		return
	}
	gv := metricsv1beta1.SchemeGroupVersion
	ct := r.Header.Get("Content-Type")
	now := time.Now()
	if ri.resource == "nodes" {
		l := &metricsv1beta1.NodeMetricsList{}
		if _, _, err := s.decodeObject(body, ct, metav1.FieldValidationIgnore, l, gv.WithKind("NodeMetricsList")); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.usage.reportNodes(l.Items, now)
	} else {
		l := &metricsv1beta1.PodMetricsList{}
		if _, _, err := s.decodeObject(body, ct, metav1.FieldValidationIgnore, l, gv.WithKind("PodMetricsList")); err != nil {
			s.writeError(w, r, err)
			return
		}
		for _, p := range l.Items {
			if p.Namespace == "" || p.Name == "" {
				s.writeError(w, r, apierrors.NewBadRequest("every pod's metrics need metadata.namespace and metadata.name"))
				return
			}
		}
		s.usage.reportPods(l.Items, now)
	}
	s.writeObject(w, r, http.StatusOK, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}

// cached returns the object of resource res (core group) from the watch
// cache.
func (s *Server) cached(res, ns, name string) (runtime.Object, bool) {
	h := s.byGR[schema.GroupResource{Resource: res}]
	if h == nil {
		return nil, false
	}
	obj, _, ok := h.cache.get(h.key(ns, name))
	return obj, ok
}

// nodeMetrics lists the fresh figures of nodes that exist (only name when
// set) whose labels match sel; each carries its node's labels.
func (s *Server) nodeMetrics(name string, sel labels.Selector) *metricsv1beta1.NodeMetricsList {
	now := time.Now()
	out := &metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}}
	s.usage.mu.RLock()
	defer s.usage.mu.RUnlock()
	for n, rep := range s.usage.nodes {
		if (name != "" && n != name) || now.Sub(rep.seen) > s.usage.ttl {
			continue
		}
		obj, ok := s.cached("nodes", "", n)
		node, isNode := obj.(*corev1.Node)
		if !ok || !isNode || !sel.Matches(labels.Set(node.Labels)) {
			continue
		}
		nm := rep.m.DeepCopy()
		nm.TypeMeta = metav1.TypeMeta{Kind: "NodeMetrics", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}
		nm.Labels = node.Labels
		nm.CreationTimestamp = metav1.NewTime(now)
		out.Items = append(out.Items, *nm)
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].Name < out.Items[j].Name })
	return out
}

// podMetrics lists the fresh figures of pods that exist (same UID when the
// report has one) in ns (all when empty; only name when set) whose labels
// match sel; each carries its pod's labels.
func (s *Server) podMetrics(ns, name string, sel labels.Selector) *metricsv1beta1.PodMetricsList {
	now := time.Now()
	out := &metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}}
	s.usage.mu.RLock()
	defer s.usage.mu.RUnlock()
	for _, rep := range s.usage.pods {
		pm := rep.m
		if (ns != "" && pm.Namespace != ns) || (name != "" && pm.Name != name) || now.Sub(rep.seen) > s.usage.ttl {
			continue
		}
		obj, ok := s.cached("pods", pm.Namespace, pm.Name)
		pod, isPod := obj.(*corev1.Pod)
		if !ok || !isPod || (pm.UID != "" && pm.UID != pod.UID) || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		c := pm.DeepCopy()
		c.TypeMeta = metav1.TypeMeta{Kind: "PodMetrics", APIVersion: metricsv1beta1.SchemeGroupVersion.String()}
		c.Labels = pod.Labels
		c.UID = ""
		c.CreationTimestamp = metav1.NewTime(now)
		out.Items = append(out.Items, *c)
	}
	sort.Slice(out.Items, func(i, j int) bool {
		a, b := out.Items[i], out.Items[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	return out
}
