package server

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/internal/apiserver/registry/scheduling"
	"github.com/skiff-sh/skiff/internal/controller/rootcacert"
)

// bootstrapObjects are the objects every cluster has from its first start;
// caPEM is the cluster CA published in kube-root-ca.crt.
func bootstrapObjects(caPEM []byte) []runtime.Object {
	var out []runtime.Object
	for _, name := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		out = append(out, &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: name}})
	}
	// The serviceaccount and root-ca-cert-publisher controllers create
	// these too; having them from the first start lets pods be admitted
	// and started in the system namespaces while no controller manager
	// runs (tests, a control plane without one).
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		out = append(out, &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}})
		out = append(out, rootcacert.ConfigMap(ns, caPEM))
	}
	for _, pc := range scheduling.SystemPriorityClasses() {
		pc.TypeMeta = metav1.TypeMeta{APIVersion: "scheduling.k8s.io/v1", Kind: "PriorityClass"}
		out = append(out, pc)
	}
	return out
}
