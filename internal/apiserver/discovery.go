package apiserver

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// allVerbs are the verbs of a resource that declares none.
var allVerbs = []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// subresource describes a subresource in discovery.
type subresource struct {
	name  string
	kind  schema.GroupVersionKind
	verbs []string
}

func (s *Server) subresources(r *registry.Resource) []subresource {
	var out []subresource
	if r.Status {
		out = append(out, subresource{"status", r.GVK, []string{"get", "patch", "update"}})
	}
	for _, name := range r.Subresources {
		out = append(out, subresource{name, r.GVK, []string{"get", "patch", "update"}})
	}
	if r.Scale != nil {
		out = append(out, subresource{"scale", schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}, []string{"get", "patch", "update"}})
	}
	if r.GVK.Group == "" {
		switch r.Plural {
		case "pods":
			out = append(out,
				subresource{"attach", schema.GroupVersionKind{Version: "v1", Kind: "PodAttachOptions"}, []string{"create", "get"}},
				subresource{"binding", schema.GroupVersionKind{Version: "v1", Kind: "Binding"}, []string{"create"}},
				subresource{"eviction", schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, []string{"create"}},
				subresource{"exec", schema.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"}, []string{"create", "get"}},
				subresource{"log", schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, []string{"get"}},
				subresource{"portforward", schema.GroupVersionKind{Version: "v1", Kind: "PodPortForwardOptions"}, []string{"create", "get"}},
				subresource{"proxy", schema.GroupVersionKind{Version: "v1", Kind: "PodProxyOptions"}, []string{"create", "delete", "get", "head", "options", "patch", "update"}})
		case "namespaces":
			out = append(out, subresource{"finalize", r.GVK, []string{"update"}})
		case "serviceaccounts":
			out = append(out, subresource{"token", schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, []string{"create"}})
		case "nodes":
			out = append(out, subresource{"proxy", schema.GroupVersionKind{Version: "v1", Kind: "NodeProxyOptions"}, []string{"create", "delete", "get", "head", "options", "patch", "update"}})
		case "services":
			out = append(out, subresource{"proxy", schema.GroupVersionKind{Version: "v1", Kind: "ServiceProxyOptions"}, []string{"create", "delete", "get", "head", "options", "patch", "update"}})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func verbsOf(r *registry.Resource) []string {
	if r.Verbs != nil {
		return r.Verbs
	}
	return allVerbs
}

func (s *Server) resourceList(gv groupVersion) *metav1.APIResourceList {
	l := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.gv.String()}
	for _, r := range gv.resources {
		l.APIResources = append(l.APIResources, metav1.APIResource{
			Name: r.Plural, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.GVK.Kind,
			Verbs: verbsOf(r), ShortNames: r.ShortNames, Categories: r.Categories,
		})
		for _, sr := range s.subresources(r) {
			l.APIResources = append(l.APIResources, metav1.APIResource{
				Name: r.Plural + "/" + sr.name, Namespaced: r.Namespaced, Kind: sr.kind.Kind,
				Group: sr.kind.Group, Version: sr.kind.Version, Verbs: sr.verbs,
			})
		}
	}
	return l
}

// aggregatedGroup returns the aggregated (v2) discovery of one group.
func (s *Server) aggregatedGroup(group string) apidiscoveryv2.APIGroupDiscovery {
	g := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: group}}
	for _, gv := range s.groups {
		if gv.gv.Group != group {
			continue
		}
		v := apidiscoveryv2.APIVersionDiscovery{Version: gv.gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
		for _, r := range gv.resources {
			scope := apidiscoveryv2.ScopeCluster
			if r.Namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			gvk := r.GVK
			rd := apidiscoveryv2.APIResourceDiscovery{
				Resource: r.Plural, SingularResource: r.Singular, Scope: scope, Verbs: verbsOf(r),
				ShortNames: r.ShortNames, Categories: r.Categories,
				ResponseKind: &metav1.GroupVersionKind{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind},
			}
			for _, sr := range s.subresources(r) {
				rd.Subresources = append(rd.Subresources, apidiscoveryv2.APISubresourceDiscovery{
					Subresource:  sr.name,
					ResponseKind: &metav1.GroupVersionKind{Group: sr.kind.Group, Version: sr.kind.Version, Kind: sr.kind.Kind},
					Verbs:        sr.verbs,
				})
			}
			v.Resources = append(v.Resources, rd)
		}
		g.Versions = append(g.Versions, v)
	}
	return g
}

func (s *Server) groupNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, gv := range s.groups {
		if gv.gv.Group != "" && !seen[gv.gv.Group] {
			seen[gv.gv.Group] = true
			out = append(out, gv.gv.Group)
		}
	}
	return out
}

// serveAggregated answers with aggregated discovery when the client asks
// for it, and reports whether it did.
func (s *Server) serveAggregated(w http.ResponseWriter, r *http.Request, groups []string) bool {
	enc, ok := s.codecs.negotiate(r, "APIGroupDiscoveryList")
	if !ok || enc.as != "APIGroupDiscoveryList" || enc.asGroup != "apidiscovery.k8s.io" {
		return false
	}
	list := &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	for _, g := range groups {
		list.Items = append(list.Items, s.aggregatedGroup(g))
	}
	var out runtime.Object = list
	switch enc.asVer {
	case "v2":
	case "v2beta1":
		// v2beta1 has the same fields; convert through JSON
		data, err := json.Marshal(list)
		if err != nil {
			s.writeError(w, r, err)
			return true
		}
		b := &apidiscoveryv2beta1.APIGroupDiscoveryList{}
		if err := json.Unmarshal(data, b); err != nil {
			s.writeError(w, r, err)
			return true
		}
		b.APIVersion = "apidiscovery.k8s.io/v2beta1"
		out = b
	default:
		return false
	}
	data, err := runtime.Encode(enc.enc, out)
	if err != nil {
		s.writeError(w, r, err)
		return true
	}
	w.Header().Set("Content-Type", enc.media+";g=apidiscovery.k8s.io;v="+enc.asVer+";as=APIGroupDiscoveryList")
	w.Header().Set("Vary", "Accept")
	_, _ = w.Write(data)
	return true
}

func (s *Server) discoveryLegacy(w http.ResponseWriter, r *http.Request) {
	if s.serveAggregated(w, r, []string{""}) {
		return
	}
	w.Header().Set("Vary", "Accept")
	s.writeObject(w, r, http.StatusOK, &metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: s.Addr()}},
	})
}

func (s *Server) apiGroup(name string) metav1.APIGroup {
	g := metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: name}
	for _, gv := range s.groups {
		if gv.gv.Group == name {
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv.gv.String(), Version: gv.gv.Version}
			g.Versions = append(g.Versions, v)
			if g.PreferredVersion.Version == "" {
				g.PreferredVersion = v
			}
		}
	}
	return g
}

func (s *Server) discoveryGroups(w http.ResponseWriter, r *http.Request) {
	if s.serveAggregated(w, r, s.groupNames()) {
		return
	}
	w.Header().Set("Vary", "Accept")
	l := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, g := range s.groupNames() {
		gg := s.apiGroup(g)
		gg.TypeMeta = metav1.TypeMeta{}
		l.Groups = append(l.Groups, gg)
	}
	s.writeObject(w, r, http.StatusOK, l)
}

// discoveryPath serves /api/v1, /apis/<group> and /apis/<group>/<version>.
func (s *Server) discoveryPath(w http.ResponseWriter, r *http.Request) bool {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[0] == "api":
		for _, gv := range s.groups {
			if gv.gv.Group == "" && gv.gv.Version == parts[1] {
				s.writeObject(w, r, http.StatusOK, s.resourceList(gv))
				return true
			}
		}
	case len(parts) == 2 && parts[0] == "apis":
		g := s.apiGroup(parts[1])
		if len(g.Versions) > 0 {
			s.writeObject(w, r, http.StatusOK, &g)
			return true
		}
	case len(parts) == 3 && parts[0] == "apis":
		for _, gv := range s.groups {
			if gv.gv.Group == parts[1] && gv.gv.Version == parts[2] {
				s.writeObject(w, r, http.StatusOK, s.resourceList(gv))
				return true
			}
		}
	default:
		return false
	}
	s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
	return true
}
