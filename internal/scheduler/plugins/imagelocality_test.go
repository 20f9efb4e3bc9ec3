package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestImageLocality(t *testing.T) {
	img := func(size int64, names ...string) func(*v1.Node) {
		return func(n *v1.Node) {
			n.Status.Images = append(n.Status.Images, v1.ContainerImage{Names: names, SizeBytes: size})
		}
	}
	nodes := []*v1.Node{
		mkNode("a", img(500*mb, "registry.local/app:1")),
		mkNode("b", img(500*mb, "registry.local/app:1")),
		mkNode("c"),
		mkNode("d", img(2000*mb, "registry.local/big:latest"), img(10*mb, "registry.local/tiny:1")),
	}
	image := func(i string) func(*v1.Pod) { return func(p *v1.Pod) { p.Spec.Containers[0].Image = i } }
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]int64
	}{
		// 500MB held by half the nodes counts 250MB: 100*(250-23)/(1000-23).
		{"image on half the nodes", mkPod("p", image("registry.local/app:1")), map[string]int64{"a": 23, "b": 23, "c": 0, "d": 0}},
		// No tag means :latest; 2000MB on a quarter counts 500MB.
		{"untagged image matches latest", mkPod("p", image("registry.local/big")), map[string]int64{"a": 0, "b": 0, "c": 0, "d": 48}},
		{"image below the threshold scores nothing", mkPod("p", image("registry.local/tiny:1")), map[string]int64{"a": 0, "b": 0, "c": 0, "d": 0}},
		{"image nowhere", mkPod("p", image("registry.local/other:2")), map[string]int64{"a": 0, "b": 0, "c": 0, "d": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, score(t, ImageLocality{}, tc.pod, cluster(t, nodes)), tc.want)
		})
	}
}
