package rootcacert

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

const ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestReconcile(t *testing.T) {
	active := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	terminating := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}
	cm := func(data map[string]string, ann map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: "ns", Annotations: ann}, Data: data}
	}
	good := cm(map[string]string{Key: ca}, map[string]string{descriptionAnnotation: description})
	tests := []struct {
		name string
		objs []runtime.Object
		verb string // the write expected, "" for none
	}{
		{"active namespace without one", []runtime.Object{active}, "create"},
		{"up to date", []runtime.Object{active, good}, ""},
		{"stale CA", []runtime.Object{active, cm(map[string]string{Key: "old"}, map[string]string{descriptionAnnotation: description})}, "update"},
		{"extra key", []runtime.Object{active, cm(map[string]string{Key: ca, "x": "y"}, map[string]string{descriptionAnnotation: description})}, "update"},
		{"no annotation", []runtime.Object{active, cm(map[string]string{Key: ca}, nil)}, "update"},
		{"terminating namespace", []runtime.Object{terminating}, ""},
		{"namespace gone", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset(tt.objs...)
			f := informers.NewSharedInformerFactory(cs, 0)
			c, err := New(Config{Client: cs, Factory: f, RootCA: []byte(ca)})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.objs {
				switch o := o.(type) {
				case *corev1.Namespace:
					_ = f.Core().V1().Namespaces().Informer().GetIndexer().Add(o)
				case *corev1.ConfigMap:
					_ = f.Core().V1().ConfigMaps().Informer().GetIndexer().Add(o)
				}
			}
			if _, err := c.Reconcile(context.Background(), "ns"); err != nil {
				t.Fatal(err)
			}
			verb := ""
			for _, a := range cs.Actions() {
				if a.GetResource().Resource == "configmaps" && (a.GetVerb() == "create" || a.GetVerb() == "update") {
					verb = a.GetVerb()
				}
			}
			if verb != tt.verb {
				t.Fatalf("write %q, want %q", verb, tt.verb)
			}
			if verb == "" {
				return
			}
			got, err := cs.CoreV1().ConfigMaps("ns").Get(context.Background(), Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Data) != 1 || got.Data[Key] != ca || got.Annotations[descriptionAnnotation] != description {
				t.Errorf("configmap = %+v", got)
			}
		})
	}
	if _, err := New(Config{Client: fake.NewClientset(), Factory: informers.NewSharedInformerFactory(fake.NewClientset(), 0)}); err == nil {
		t.Error("New without a CA: no error")
	}
}
