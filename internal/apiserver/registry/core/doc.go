// Package core describes the core/v1 API group's resources (pods, services,
// nodes, namespaces, ...) and their strategies: the defaults, validation,
// field-selector fields and table columns that upstream Kubernetes applies.
package core

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Options tune the core/v1 strategies.
type Options struct {
	// NotReadyTolerationSeconds and UnreachableTolerationSeconds are the
	// tolerationSeconds of the default not-ready and unreachable NoExecute
	// tolerations added to every pod (upstream's
	// --default-not-ready-toleration-seconds and
	// --default-unreachable-toleration-seconds); nil means
	// DefaultTolerationSeconds.
	NotReadyTolerationSeconds, UnreachableTolerationSeconds *int64
}

// Resources returns the core/v1 resources the API server serves, with the
// default Options.
func Resources() []*registry.Resource { return ResourcesWith(Options{}) }

// ResourcesWith returns the core/v1 resources the API server serves.
func ResourcesWith(opts Options) []*registry.Resource {
	gvk := corev1.SchemeGroupVersion.WithKind
	return []*registry.Resource{
		{
			GVK: gvk("Namespace"), Plural: "namespaces", Singular: "namespace", ShortNames: []string{"ns"},
			Namespaced: false, Status: true,
			// Upstream namespaces have no deletecollection.
			Verbs:    []string{"create", "delete", "get", "list", "patch", "update", "watch"},
			New:      func() runtime.Object { return &corev1.Namespace{} },
			NewList:  func() runtime.Object { return &corev1.NamespaceList{} },
			Strategy: namespaceStrategy{},
		},
		{
			GVK: gvk("Pod"), Plural: "pods", Singular: "pod", ShortNames: []string{"po"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:      func() runtime.Object { return &corev1.Pod{} },
			NewList:  func() runtime.Object { return &corev1.PodList{} },
			Strategy: newPodStrategy(opts),
		},
		{
			GVK: gvk("Node"), Plural: "nodes", Singular: "node", ShortNames: []string{"no"},
			Namespaced: false, Status: true,
			New:      func() runtime.Object { return &corev1.Node{} },
			NewList:  func() runtime.Object { return &corev1.NodeList{} },
			Strategy: nodeStrategy{},
		},
		{
			GVK: gvk("Service"), Plural: "services", Singular: "service", ShortNames: []string{"svc"},
			Categories: []string{"all"}, Namespaced: true, Status: true,
			New:      func() runtime.Object { return &corev1.Service{} },
			NewList:  func() runtime.Object { return &corev1.ServiceList{} },
			Strategy: serviceStrategy{},
		},
		{
			GVK: gvk("Endpoints"), Plural: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"},
			Namespaced: true,
			New:        func() runtime.Object { return &corev1.Endpoints{} },
			NewList:    func() runtime.Object { return &corev1.EndpointsList{} },
			Strategy:   endpointsStrategy{},
		},
		{
			GVK: gvk("ConfigMap"), Plural: "configmaps", Singular: "configmap", ShortNames: []string{"cm"},
			Namespaced: true,
			New:        func() runtime.Object { return &corev1.ConfigMap{} },
			NewList:    func() runtime.Object { return &corev1.ConfigMapList{} },
			Strategy:   configMapStrategy{},
		},
		{
			GVK: gvk("Secret"), Plural: "secrets", Singular: "secret",
			Namespaced: true,
			New:        func() runtime.Object { return &corev1.Secret{} },
			NewList:    func() runtime.Object { return &corev1.SecretList{} },
			Strategy:   secretStrategy{},
		},
		{
			GVK: gvk("ServiceAccount"), Plural: "serviceaccounts", Singular: "serviceaccount", ShortNames: []string{"sa"},
			Namespaced: true,
			New:        func() runtime.Object { return &corev1.ServiceAccount{} },
			NewList:    func() runtime.Object { return &corev1.ServiceAccountList{} },
			Strategy:   serviceAccountStrategy{},
		},
		{
			GVK: gvk("Event"), Plural: "events", Singular: "event", ShortNames: []string{"ev"},
			Namespaced: true,
			New:        func() runtime.Object { return &corev1.Event{} },
			NewList:    func() runtime.Object { return &corev1.EventList{} },
			Strategy:   eventStrategy{},
		},
		{
			GVK: gvk("ResourceQuota"), Plural: "resourcequotas", Singular: "resourcequota", ShortNames: []string{"quota"},
			Namespaced: true, Status: true,
			New:      func() runtime.Object { return &corev1.ResourceQuota{} },
			NewList:  func() runtime.Object { return &corev1.ResourceQuotaList{} },
			Strategy: resourceQuotaStrategy{},
		},
		{
			GVK: gvk("LimitRange"), Plural: "limitranges", Singular: "limitrange", ShortNames: []string{"limits"},
			Namespaced: true,
			New:        func() runtime.Object { return &corev1.LimitRange{} },
			NewList:    func() runtime.Object { return &corev1.LimitRangeList{} },
			Strategy:   limitRangeStrategy{},
		},
	}
}
