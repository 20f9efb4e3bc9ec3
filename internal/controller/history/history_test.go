package history

import (
	"context"
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func template(image string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}
}

func TestTemplatePatchRoundTrip(t *testing.T) {
	data, err := TemplatePatch(template("img:1"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Template(&appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: data}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Spec.Containers[0].Image != "img:1" || got.Labels["app"] != "x" {
		t.Errorf("round trip: %+v", got)
	}
}

func TestHashAndEqual(t *testing.T) {
	one := int32(1)
	if Hash([]byte("a"), nil) == Hash([]byte("a"), &one) || Hash([]byte("a"), nil) != Hash([]byte("a"), nil) {
		t.Error("hash must change with the collision count only")
	}
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{`{"a":1}`, `{"a":1}`, true},
		{`{"a":1,"b":2}`, `{ "b": 2, "a": 1 }`, true},
		{`{"a":1}`, `{"a":2}`, false},
	} {
		ra := &appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: []byte(tc.a)}}
		rb := &appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: []byte(tc.b)}}
		if Equal(ra, rb) != tc.want {
			t.Errorf("Equal(%s, %s) = %v", tc.a, tc.b, !tc.want)
		}
	}
}

func TestCurrent(t *testing.T) {
	owner := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "ns", UID: "u1"}}
	kind := appsv1.SchemeGroupVersion.WithKind("DaemonSet")
	ctx := context.Background()
	client := fake.NewClientset()
	s := &Store{Client: client, Indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}), Kind: kind}
	d1, _ := TemplatePatch(template("img:1"))
	d2, _ := TemplatePatch(template("img:2"))

	r1, err := s.Current(ctx, owner, map[string]string{"app": "x"}, d1, nil, nil)
	if err != nil || r1.Revision != 1 || r1.Labels[HashLabel] == "" || r1.Labels["app"] != "x" {
		t.Fatalf("first revision %+v, %v", r1, err)
	}
	r2, err := s.Current(ctx, owner, nil, d2, []*appsv1.ControllerRevision{r1}, nil)
	if err != nil || r2.Revision != 2 {
		t.Fatalf("second revision %+v, %v", r2, err)
	}
	// Rolling back to the first template renumbers its revision.
	back, err := s.Current(ctx, owner, nil, d1, []*appsv1.ControllerRevision{r1, r2}, nil)
	if err != nil || back.Name != r1.Name || back.Revision != 3 {
		t.Fatalf("rollback %+v, %v", back, err)
	}
	// Unchanged: nothing is written.
	same, err := s.Current(ctx, owner, nil, d1, []*appsv1.ControllerRevision{r2, back}, nil)
	if err != nil || same.Name != r1.Name || same.Revision != 3 {
		t.Fatalf("unchanged %+v, %v", same, err)
	}
	// Another owner's revision under the same name is a collision.
	other := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "ds", Namespace: "ns", UID: "u2"}}
	d3, _ := TemplatePatch(template("img:3"))
	if _, err := client.AppsV1().ControllerRevisions("ns").Create(ctx, New(other, kind, nil, d3, 1, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Current(ctx, owner, nil, d3, []*appsv1.ControllerRevision{r2, back}, nil); !errors.Is(err, ErrCollision) {
		t.Errorf("collision: got %v", err)
	}
	one := int32(1)
	if r, err := s.Current(ctx, owner, nil, d3, []*appsv1.ControllerRevision{r2, back}, &one); err != nil || r.Revision != 4 {
		t.Errorf("after raising the collision count: %+v, %v", r, err)
	}
}

func TestTruncate(t *testing.T) {
	ctx := context.Background()
	var revs []*appsv1.ControllerRevision
	var objs []runtime.Object
	for i, name := range []string{"a", "b", "c", "d"} {
		r := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Revision: int64(i + 1)}
		revs = append(revs, r)
		objs = append(objs, r)
	}
	client := fake.NewClientset(objs...)
	s := &Store{Client: client}
	// d is live; of a, b, c one may stay: the newest, c.
	if err := s.Truncate(ctx, revs, map[string]bool{"d": true}, 1); err != nil {
		t.Fatal(err)
	}
	left, _ := client.AppsV1().ControllerRevisions("ns").List(ctx, metav1.ListOptions{})
	var names []string
	for _, r := range left.Items {
		names = append(names, r.Name)
	}
	if len(names) != 2 || names[0] != "c" || names[1] != "d" {
		t.Errorf("left %v, want [c d]", names)
	}
}
