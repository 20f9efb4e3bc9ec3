package serviceaccount

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func TestReconcile(t *testing.T) {
	active := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	terminating := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: "ns"}}
	other := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "builder", Namespace: "ns"}}
	tests := []struct {
		name   string
		objs   []runtime.Object
		create bool
	}{
		{"active namespace without one", []runtime.Object{active, other}, true},
		{"active namespace with one", []runtime.Object{active, sa}, false},
		{"terminating namespace", []runtime.Object{terminating}, false},
		{"namespace gone", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objs...)
			f := informers.NewSharedInformerFactory(cs, 0)
			c, err := New(Config{Client: cs, Factory: f})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.objs {
				switch o := o.(type) {
				case *corev1.Namespace:
					_ = f.Core().V1().Namespaces().Informer().GetIndexer().Add(o)
				case *corev1.ServiceAccount:
					_ = f.Core().V1().ServiceAccounts().Informer().GetIndexer().Add(o)
				}
			}
			if _, err := c.Reconcile(context.Background(), "ns"); err != nil {
				t.Fatal(err)
			}
			created := false
			for _, a := range cs.Actions() {
				created = created || (a.GetVerb() == "create" && a.GetResource().Resource == "serviceaccounts")
			}
			if created != tt.create {
				t.Errorf("created = %v, want %v", created, tt.create)
			}
		})
	}
}
