package nodeipam

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

func TestReconcile(t *testing.T) {
	node := func(name string, cidrs ...string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: cidrs}}
		if len(cidrs) > 0 {
			n.Spec.PodCIDR = cidrs[0]
		}
		return n
	}
	tests := []struct {
		name  string
		nodes []*corev1.Node
		key   string
		patch string // the patch sent, "" for none
		event string
	}{
		{"new node gets the first free CIDR", []*corev1.Node{node("a", "10.42.0.0/24"), node("b")}, "b",
			`{"spec":{"podCIDR":"10.42.1.0/24","podCIDRs":["10.42.1.0/24"]}}`, ""},
		{"node with a CIDR is left alone", []*corev1.Node{node("a", "10.42.0.0/24")}, "a", "", ""},
		{"exhausted", []*corev1.Node{node("a", "10.42.0.0/24"), node("b", "10.42.1.0/24"), node("c")}, "c", "", "CIDRNotAvailable"},
		{"node gone", nil, "a", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for _, n := range tt.nodes {
				objs = append(objs, n)
			}
			cs := fake.NewClientset(objs...)
			f := informers.NewSharedInformerFactory(cs, 0)
			rec := record.NewFakeRecorder(10)
			c, err := New(Config{Client: cs, Factory: f, Recorder: rec, ClusterCIDR: "10.42.0.0/23"})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tt.nodes {
				_ = f.Core().V1().Nodes().Informer().GetIndexer().Add(n)
				c.occupy(n)
			}
			if _, err := c.Reconcile(context.Background(), tt.key); err != nil {
				t.Fatal(err)
			}
			patch := ""
			for _, a := range cs.Actions() {
				if p, ok := a.(k8stesting.PatchAction); ok {
					patch = string(p.GetPatch())
				}
			}
			if patch != tt.patch {
				t.Errorf("patch %s, want %s", patch, tt.patch)
			}
			event := ""
			select {
			case event = <-rec.Events:
			default:
			}
			if !strings.Contains(event, tt.event) || (tt.event == "") != (event == "") {
				t.Errorf("event %q, want %q", event, tt.event)
			}
		})
	}
}
