package garbagecollector

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	metadatafake "k8s.io/client-go/metadata/fake"
	k8stesting "k8s.io/client-go/testing"
)

var (
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	replicasets = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}
	pods        = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	nodes       = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	testRes     = []Resource{
		{GVR: deployments, Kind: "Deployment", Namespaced: true},
		{GVR: replicasets, Kind: "ReplicaSet", Namespaced: true},
		{GVR: pods, Kind: "Pod", Namespaced: true},
		{GVR: nodes, Kind: "Node"},
	}
	gvrOf = map[string]schema.GroupVersionResource{"Deployment": deployments, "ReplicaSet": replicasets, "Pod": pods, "Node": nodes}
)

type obj struct {
	kind, name string
	owners     []ref
	deleting   bool
	finalizers []string
	inCache    bool // false: only the API server has it (a slow watch)
}

type ref struct {
	kind, name string
	block      bool
}

func (o obj) meta() *metav1.PartialObjectMetadata {
	gvr := gvrOf[o.kind]
	m := &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: gvr.GroupVersion().String(), Kind: o.kind},
		ObjectMeta: metav1.ObjectMeta{Name: o.name, UID: types.UID("uid-" + o.name), ResourceVersion: "7", Finalizers: o.finalizers},
	}
	if o.kind != "Node" {
		m.Namespace = "ns"
	}
	if o.deleting {
		now := metav1.Now()
		m.DeletionTimestamp = &now
	}
	for _, r := range o.owners {
		b := r.block
		m.OwnerReferences = append(m.OwnerReferences, metav1.OwnerReference{APIVersion: gvrOf[r.kind].GroupVersion().String(),
			Kind: r.kind, Name: r.name, UID: types.UID("uid-" + r.name), BlockOwnerDeletion: &b})
	}
	return m
}

func TestReconcile(t *testing.T) {
	rs := func(owners ...ref) obj { return obj{kind: "ReplicaSet", name: "rs", owners: owners, inCache: true} }
	pod := func(name string, owners ...ref) obj {
		return obj{kind: "Pod", name: name, owners: owners, inCache: true}
	}
	deploy := obj{kind: "Deployment", name: "d", inCache: true}
	toD := ref{kind: "Deployment", name: "d", block: true}
	toRS := ref{kind: "ReplicaSet", name: "rs", block: true}
	tests := []struct {
		name    string
		objs    []obj
		key     string
		want    []string // actions: "delete <resource>/<name> <policy>", "patch <resource>/<name> <body>"
		wantErr bool
	}{
		{name: "owner present: nothing", objs: []obj{deploy, rs(toD)}, key: key(replicasets, "ns", "rs")},
		{name: "owner only on the API server (slow watch): nothing",
			objs: []obj{{kind: "Deployment", name: "d"}, rs(toD)}, key: key(replicasets, "ns", "rs"),
			want: []string{"get deployments/d"}},
		{name: "background: owner gone, dependent deleted",
			objs: []obj{rs(toD)}, key: key(replicasets, "ns", "rs"),
			want: []string{"get deployments/d", "delete replicasets/rs Background"}},
		{name: "owner replaced by one with another UID counts as gone",
			objs: []obj{rs(ref{kind: "Deployment", name: "old", block: true}), {kind: "Deployment", name: "old2"}},
			key:  key(replicasets, "ns", "rs"),
			want: []string{"get deployments/old", "delete replicasets/rs Background"}},
		{name: "one owner gone, one left: the reference is dropped",
			objs: []obj{deploy, rs(toD, ref{kind: "Deployment", name: "gone"})}, key: key(replicasets, "ns", "rs"),
			want: []string{"get deployments/gone", `patch replicasets/rs {"metadata":{"ownerReferences":[{"$patch":"delete","uid":"uid-gone"}],"uid":"uid-rs"}}`}},
		{name: "cluster-scoped owner", objs: []obj{pod("p", ref{kind: "Node", name: "n1"})}, key: key(pods, "ns", "p"),
			want: []string{"get nodes/n1", "delete pods/p Background"}},
		{name: "orphan: references stripped, then the finalizer removed",
			objs: []obj{{kind: "ReplicaSet", name: "rs", deleting: true, finalizers: []string{"orphan", "x"}, inCache: true},
				pod("p1", toRS), pod("p2", toRS)},
			key: key(replicasets, "ns", "rs"),
			want: []string{
				`patch pods/p1 {"metadata":{"ownerReferences":[{"$patch":"delete","uid":"uid-rs"}],"uid":"uid-p1"}}`,
				`patch pods/p2 {"metadata":{"ownerReferences":[{"$patch":"delete","uid":"uid-rs"}],"uid":"uid-p2"}}`,
				`patch replicasets/rs {"metadata":{"finalizers":["x"],"resourceVersion":"7"}}`,
			}},
		{name: "foreground: owner waits while a blocking dependent exists",
			objs: []obj{{kind: "ReplicaSet", name: "rs", deleting: true, finalizers: []string{"foregroundDeletion"}, inCache: true},
				pod("p1", toRS)},
			key: key(replicasets, "ns", "rs")},
		{name: "foreground: a dependent of a waiting owner is deleted",
			objs: []obj{{kind: "ReplicaSet", name: "rs", deleting: true, finalizers: []string{"foregroundDeletion"}, inCache: true},
				pod("p1", toRS)},
			key:  key(pods, "ns", "p1"),
			want: []string{"delete pods/p1 Background"}},
		{name: "foreground: a dependent with dependents of its own goes in the foreground",
			objs: []obj{{kind: "Deployment", name: "d", deleting: true, finalizers: []string{"foregroundDeletion"}, inCache: true},
				rs(toD), pod("p1", toRS)},
			key:  key(replicasets, "ns", "rs"),
			want: []string{"delete replicasets/rs Foreground"}},
		{name: "foreground: finalizer removed once only non-blocking dependents remain",
			objs: []obj{{kind: "ReplicaSet", name: "rs", deleting: true, finalizers: []string{"foregroundDeletion"}, inCache: true},
				pod("p1", ref{kind: "ReplicaSet", name: "rs", block: false})},
			key:  key(replicasets, "ns", "rs"),
			want: []string{`patch replicasets/rs {"metadata":{"finalizers":[],"resourceVersion":"7"}}`}},
		{name: "being deleted without our finalizers: nothing",
			objs: []obj{{kind: "Pod", name: "p", deleting: true, owners: []ref{toRS}, inCache: true}}, key: key(pods, "ns", "p")},
		{name: "gone from the cache: nothing", key: key(pods, "ns", "nope")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			scheme := runtime.NewScheme()
			metav1.AddMetaToScheme(scheme)
			var apiObjs []runtime.Object
			for _, o := range tt.objs {
				apiObjs = append(apiObjs, o.meta())
			}
			client := metadatafake.NewSimpleMetadataClient(scheme, apiObjs...)
			client.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
				return true, &metav1.PartialObjectMetadata{}, nil
			})
			g := New(Config{Metadata: client})
			if err := g.watch(testRes); err != nil {
				t.Fatal(err)
			}
			for _, o := range tt.objs {
				if o.inCache {
					if err := g.byGVR[gvrOf[o.kind]].informer.GetIndexer().Add(o.meta()); err != nil {
						t.Fatal(err)
					}
				}
			}
			client.ClearActions()
			_, err := g.Reconcile(context.Background(), tt.key)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			var got []string
			for _, a := range client.Actions() {
				switch a := a.(type) {
				case k8stesting.DeleteAction:
					got = append(got, "delete "+a.GetResource().Resource+"/"+a.GetName()+" "+string(*a.GetDeleteOptions().PropagationPolicy))
					if p := a.GetDeleteOptions().Preconditions; p == nil || p.UID == nil || *p.UID != types.UID("uid-"+a.GetName()) {
						t.Errorf("delete of %s without its UID as precondition", a.GetName())
					}
				case k8stesting.PatchAction:
					var v any
					_ = json.Unmarshal(a.GetPatch(), &v)
					b, _ := json.Marshal(v)
					got = append(got, "patch "+a.GetResource().Resource+"/"+a.GetName()+" "+string(b))
				case k8stesting.GetAction:
					got = append(got, "get "+a.GetResource().Resource+"/"+a.GetName())
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("actions:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestForegroundEnqueuesDependents(t *testing.T) {
	scheme := runtime.NewScheme()
	metav1.AddMetaToScheme(scheme)
	g := New(Config{Metadata: metadatafake.NewSimpleMetadataClient(scheme)})
	if err := g.watch(testRes); err != nil {
		t.Fatal(err)
	}
	owner := obj{kind: "ReplicaSet", name: "rs", deleting: true, finalizers: []string{"foregroundDeletion"}}
	_ = g.byGVR[replicasets].informer.GetIndexer().Add(owner.meta())
	for _, n := range []string{"p1", "p2"} {
		_ = g.byGVR[pods].informer.GetIndexer().Add(obj{kind: "Pod", name: n, owners: []ref{{kind: "ReplicaSet", name: "rs", block: true}}}.meta())
	}
	if _, err := g.Reconcile(context.Background(), key(replicasets, "ns", "rs")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for g.loop.Len() > 0 {
		k, _ := g.loop.Next()
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{key(pods, "ns", "p1"), key(pods, "ns", "p2")}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Fatalf("queued %v, want %v", keys, want)
	}
}

func TestResourcesOf(t *testing.T) {
	lists := []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "pods", Kind: "Pod", Namespaced: true, Verbs: []string{"list", "watch", "delete", "get"}},
			{Name: "pods/status", Kind: "Pod", Namespaced: true, Verbs: []string{"get", "update"}},
			{Name: "events", Kind: "Event", Namespaced: true, Verbs: []string{"list", "watch", "delete"}},
			{Name: "bindings", Kind: "Binding", Namespaced: true, Verbs: []string{"create"}},
		}},
		{GroupVersion: "apps/v1", APIResources: []metav1.APIResource{
			{Name: "deployments", Kind: "Deployment", Namespaced: true, Verbs: []string{"list", "watch", "delete"}},
		}},
	}
	got := resourcesOf(lists)
	if len(got) != 2 || got[0].GVR != pods || got[1].GVR != deployments || !got[0].Namespaced {
		t.Fatalf("resources %+v, want pods and deployments", got)
	}
}
