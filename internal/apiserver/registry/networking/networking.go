// Package networking describes the networking.k8s.io/v1 API group's
// resources (ingresses, ingressclasses, networkpolicies) and their
// strategies: upstream's defaults, validation and kubectl columns.
package networking

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Resources returns the networking.k8s.io/v1 resources the API server
// serves.
func Resources() []*registry.Resource {
	gvk := networkingv1.SchemeGroupVersion.WithKind
	return []*registry.Resource{
		{
			GVK: gvk("Ingress"), Plural: "ingresses", Singular: "ingress", ShortNames: []string{"ing"},
			Namespaced: true, Status: true,
			New:      func() runtime.Object { return &networkingv1.Ingress{} },
			NewList:  func() runtime.Object { return &networkingv1.IngressList{} },
			Strategy: ingressStrategy{},
		},
		{
			GVK: gvk("IngressClass"), Plural: "ingressclasses", Singular: "ingressclass",
			New:      func() runtime.Object { return &networkingv1.IngressClass{} },
			NewList:  func() runtime.Object { return &networkingv1.IngressClassList{} },
			Strategy: ingressClassStrategy{},
		},
		{
			GVK: gvk("NetworkPolicy"), Plural: "networkpolicies", Singular: "networkpolicy", ShortNames: []string{"netpol"},
			Namespaced: true,
			New:        func() runtime.Object { return &networkingv1.NetworkPolicy{} },
			NewList:    func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
			Strategy:   networkPolicyStrategy{},
		},
	}
}

func col(name, typ, desc string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Description: desc}
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// messages turns validation messages into Invalid errors.
func messages(path *field.Path, value any, msgs []string) field.ErrorList {
	var errs field.ErrorList
	for _, m := range msgs {
		errs = append(errs, field.Invalid(path, value, m))
	}
	return errs
}
