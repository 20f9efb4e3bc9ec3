package cri

import (
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func ids[T any](items []T, id func(T) string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

func knownPods(uids ...types.UID) func(types.UID) bool {
	m := map[types.UID]bool{}
	for _, u := range uids {
		m[u] = true
	}
	return func(u types.UID) bool { return m[u] }
}

func TestDeadContainers(t *testing.T) {
	ctr := func(id, pod, name string, attempt uint32, created int64, exited bool) gcContainer {
		return gcContainer{id: id, sandboxID: "sb-" + pod, pod: types.UID(pod), name: name, attempt: attempt, createdAt: created, exited: exited}
	}
	for _, tc := range []struct {
		name string
		cs   []gcContainer
		want []string
	}{
		{"nothing dead", []gcContainer{ctr("a0", "p", "a", 0, 1, false)}, []string{}},
		{"the one dead attempt of a running container stays",
			[]gcContainer{ctr("a1", "p", "a", 1, 2, false), ctr("a0", "p", "a", 0, 1, true)}, []string{}},
		{"older dead attempts go",
			[]gcContainer{ctr("a3", "p", "a", 3, 4, false), ctr("a2", "p", "a", 2, 3, true), ctr("a1", "p", "a", 1, 2, true), ctr("a0", "p", "a", 0, 1, true)},
			[]string{"a0", "a1"}},
		{"a finished container keeps its last attempt",
			[]gcContainer{ctr("a1", "p", "a", 1, 2, true), ctr("a0", "p", "a", 0, 1, true)}, []string{"a0"}},
		{"same attempt in two sandboxes: the newer stays",
			[]gcContainer{ctr("old", "p", "a", 2, 1, true), ctr("new", "p", "a", 2, 5, true)}, []string{"old"}},
		{"per container name",
			[]gcContainer{ctr("a1", "p", "a", 1, 2, true), ctr("a0", "p", "a", 0, 1, true), ctr("b1", "p", "b", 1, 2, true), ctr("init0", "p", "init", 0, 0, true)},
			[]string{"a0"}},
		{"per pod",
			[]gcContainer{ctr("p1", "p", "a", 1, 2, true), ctr("p0", "p", "a", 0, 1, true), ctr("q1", "q", "a", 1, 2, true), ctr("q0", "q", "a", 0, 1, true)},
			[]string{"p0", "q0"}},
		{"unknown pods and unlabelled containers are not this rule's",
			[]gcContainer{ctr("x1", "gone", "a", 1, 2, true), ctr("x0", "gone", "a", 0, 1, true), ctr("n1", "", "a", 1, 2, true), ctr("n0", "", "a", 0, 1, true)},
			[]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(deadContainers(tc.cs, knownPods("p", "q")), func(c gcContainer) string { return c.id })
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("deadContainers = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOrphans(t *testing.T) {
	sb := func(id, uid string) *runtimeapi.PodSandbox {
		labels := map[string]string{}
		if uid != "" {
			labels[LabelPodUID] = uid
		}
		return &runtimeapi.PodSandbox{Id: id, Labels: labels}
	}
	sbs := []*runtimeapi.PodSandbox{sb("s1", "live"), sb("s2", "gone"), sb("s3", "gone"), sb("s4", ""), sb("s5", "also-gone")}
	cs := []gcContainer{
		{id: "c1", sandboxID: "s1", pod: "live"},
		{id: "c2", sandboxID: "s2", pod: "gone"},   // goes with its sandbox
		{id: "c3", sandboxID: "none", pod: "lost"}, // no sandbox, unknown pod
		{id: "c4", sandboxID: "none", pod: "live"}, // no sandbox, but its pod lives: left alone
		{id: "c5", sandboxID: "none"},              // not a pod's: left alone
	}
	pods, loose := orphans(sbs, cs, knownPods("live"))
	if want := []types.UID{"also-gone", "gone"}; !reflect.DeepEqual(pods, want) {
		t.Errorf("orphaned pods %v, want %v", pods, want)
	}
	if got := ids(loose, func(c gcContainer) string { return c.id }); !reflect.DeepEqual(got, []string{"c3"}) {
		t.Errorf("loose containers %v, want [c3]", got)
	}
}

func TestImagesToRemove(t *testing.T) {
	now := time.Unix(10000, 0)
	old := now.Add(-time.Hour)
	im := func(id string, size uint64, lastUsed time.Time, refs ...string) gcImage {
		return gcImage{id: id, refs: refs, size: size, firstSeen: old, lastUsed: lastUsed}
	}
	images := []gcImage{
		im("sha256:a", 30, old.Add(3*time.Minute), "example.com/a:1"),
		im("sha256:b", 50, old.Add(1*time.Minute), "example.com/b:1"),
		im("sha256:c", 20, old.Add(2*time.Minute), "example.com/c:1"),
		im("sha256:never", 10, time.Time{}, "example.com/never:1"),
		im("sha256:big-never", 40, time.Time{}, "example.com/big-never:1"),
		{id: "sha256:pinned", size: 100, firstSeen: old, pinned: true},
		{id: "sha256:new", size: 100, firstSeen: now.Add(-time.Minute)},
		im("sha256:used", 100, old, "example.com/used:1"),
		im("sha256:used-by-ref", 100, old, "example.com/byref:1"),
	}
	inUse := map[string]bool{"sha256:used": true, "example.com/byref:1": true}
	p := imageGCPolicy{high: 85, low: 80, minAge: 2 * time.Minute}
	for _, tc := range []struct {
		name           string
		used, capacity uint64
		policy         imageGCPolicy
		want           []string
	}{
		{"below the high threshold", 84, 100, p, []string{}},
		{"at the threshold: free 5 bytes, the never-used largest first", 85, 100, p, []string{"sha256:big-never"}},
		{"free 55: least recently used after the never used", 135, 100 * 1, imageGCPolicy{high: 85, low: 80, minAge: 2 * time.Minute}, []string{"sha256:big-never", "sha256:never", "sha256:b"}},
		{"full: everything that may go", 1000, 1000, imageGCPolicy{high: 1, low: 0, minAge: 2 * time.Minute},
			[]string{"sha256:big-never", "sha256:never", "sha256:b", "sha256:c", "sha256:a"}},
		{"high 100 disables", 100, 100, imageGCPolicy{high: 100, low: 80}, []string{}},
		{"no capacity", 10, 0, p, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(imagesToRemove(images, inUse, tc.used, tc.capacity, tc.policy, now), func(i gcImage) string { return i.id })
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("imagesToRemove = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPinnedImage(t *testing.T) {
	for _, tc := range []struct {
		im   *runtimeapi.Image
		want bool
	}{
		{&runtimeapi.Image{RepoTags: []string{"skiff.local/pause:latest"}}, true},
		{&runtimeapi.Image{RepoTags: []string{"skiff.local/testserver:latest"}}, true},
		{&runtimeapi.Image{RepoTags: []string{"example.com/skiff.local/x:1"}}, false},
		{&runtimeapi.Image{Pinned: true}, true},
		{&runtimeapi.Image{RepoTags: []string{"docker.io/library/nginx:1"}}, false},
	} {
		if got := pinnedImage(tc.im); got != tc.want {
			t.Errorf("pinnedImage(%v) = %t, want %t", tc.im.RepoTags, got, tc.want)
		}
	}
}

func TestGCObserve(t *testing.T) {
	var s gcState
	t0 := time.Unix(1000, 0)
	imgs := []*runtimeapi.Image{{Id: "a", RepoTags: []string{"x/a:1"}}, {Id: "b"}}
	got := s.observe(imgs, map[string]bool{"x/a:1": true}, t0)
	if !got[0].lastUsed.Equal(t0) || !got[1].lastUsed.IsZero() || !got[1].firstSeen.Equal(t0) {
		t.Errorf("first observe: %+v", got)
	}
	got = s.observe(imgs[1:], map[string]bool{"b": true}, t0.Add(time.Minute))
	if len(got) != 1 || !got[0].firstSeen.Equal(t0) || !got[0].lastUsed.Equal(t0.Add(time.Minute)) {
		t.Errorf("second observe: %+v", got)
	}
	if _, ok := s.firstSeen["a"]; ok {
		t.Error("a removed image is still remembered")
	}
}

func TestImageGCThresholds(t *testing.T) {
	for _, tc := range []struct {
		high, low         int
		wantHigh, wantLow int
		wantErr           bool
	}{
		{0, 0, 85, 80, false},
		{90, 0, 90, 80, false},
		{100, 95, 100, 95, false},
		{70, 75, 0, 0, true},
		{101, 80, 0, 0, true},
		{85, -1, 0, 0, true},
	} {
		cfg := Config{ImageGCHighThreshold: tc.high, ImageGCLowThreshold: tc.low}
		err := cfg.defaultImageGC()
		if (err != nil) != tc.wantErr || !tc.wantErr && (cfg.ImageGCHighThreshold != tc.wantHigh || cfg.ImageGCLowThreshold != tc.wantLow) {
			t.Errorf("high %d low %d: got %d %d %v", tc.high, tc.low, cfg.ImageGCHighThreshold, cfg.ImageGCLowThreshold, err)
		}
	}
}
