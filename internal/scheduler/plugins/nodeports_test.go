package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

func withPorts(ports ...v1.ContainerPort) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Spec.Containers[0].Ports = ports }
}

func TestNodePorts(t *testing.T) {
	nodes := []*v1.Node{mkNode("a"), mkNode("b")}
	existing := mkPod("old", podOnNode("a"), withPorts(
		v1.ContainerPort{ContainerPort: 80, HostPort: 8080},
		v1.ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: v1.ProtocolUDP, HostIP: "10.0.0.1"},
	))
	tests := []struct {
		name string
		port v1.ContainerPort
		want string // verdict on node a; b is always free
	}{
		{"same port tcp", v1.ContainerPort{ContainerPort: 80, HostPort: 8080}, "U:" + ErrReasonNodePorts},
		{"existing wildcard ip conflicts with specific ip", v1.ContainerPort{ContainerPort: 80, HostPort: 8080, HostIP: "10.0.0.2"}, "U:" + ErrReasonNodePorts},
		{"same port udp", v1.ContainerPort{ContainerPort: 80, HostPort: 8080, Protocol: v1.ProtocolUDP}, ""},
		{"other port", v1.ContainerPort{ContainerPort: 80, HostPort: 8081}, ""},
		{"container port only", v1.ContainerPort{ContainerPort: 8080}, ""},
		{"udp same ip", v1.ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: v1.ProtocolUDP, HostIP: "10.0.0.1"}, "U:" + ErrReasonNodePorts},
		{"udp other ip", v1.ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: v1.ProtocolUDP, HostIP: "10.0.0.2"}, ""},
		{"udp wildcard ip", v1.ContainerPort{ContainerPort: 53, HostPort: 53, Protocol: v1.ProtocolUDP}, "U:" + ErrReasonNodePorts},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := filter(t, NodePorts{}, mkPod("p", withPorts(tc.port)), cluster(t, nodes, existing))
			assertMap(t, got, map[string]string{"a": tc.want, "b": ""})
		})
	}
}

func TestNodePortsReleasedOnRemove(t *testing.T) {
	nodes := cluster(t, []*v1.Node{mkNode("a")})
	old := mkPod("old", podOnNode("a"), withPorts(v1.ContainerPort{HostPort: 8080}))
	nodes[0].AddPod(framework.NewPodInfo(old))
	if err := nodes[0].RemovePod(old); err != nil {
		t.Fatal(err)
	}
	got := filter(t, NodePorts{}, mkPod("p", withPorts(v1.ContainerPort{HostPort: 8080})), nodes)
	assertMap(t, got, map[string]string{"a": ""})
}
