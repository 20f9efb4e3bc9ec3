package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestNodeName(t *testing.T) {
	nodes := []*v1.Node{mkNode("a"), mkNode("b")}
	tests := []struct {
		name     string
		nodeName string
		want     map[string]string
	}{
		{"no node name", "", map[string]string{"a": "", "b": ""}},
		{"names a", "a", map[string]string{"a": "", "b": "UU:" + ErrReasonNodeName}},
		{"names a missing node", "c", map[string]string{"a": "UU:" + ErrReasonNodeName, "b": "UU:" + ErrReasonNodeName}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := mkPod("p", func(p *v1.Pod) { p.Spec.NodeName = tc.nodeName })
			assertMap(t, filter(t, NodeName{}, pod, cluster(t, nodes)), tc.want)
		})
	}
}
