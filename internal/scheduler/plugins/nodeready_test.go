package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestNodeReady(t *testing.T) {
	cond := func(ct v1.NodeConditionType, s v1.ConditionStatus) func(*v1.Node) {
		return func(n *v1.Node) {
			n.Status.Conditions = append(n.Status.Conditions[:0:0], v1.NodeCondition{Type: ct, Status: s})
		}
	}
	nodes := []*v1.Node{
		mkNode("ready"),
		mkNode("notready", cond(v1.NodeReady, v1.ConditionFalse)),
		mkNode("unknown", cond(v1.NodeReady, v1.ConditionUnknown)),
		mkNode("noconditions", func(n *v1.Node) { n.Status.Conditions = nil }),
		mkNode("nonetwork", func(n *v1.Node) {
			n.Status.Conditions = append(n.Status.Conditions, v1.NodeCondition{Type: v1.NodeNetworkUnavailable, Status: v1.ConditionTrue})
		}),
	}
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]string
	}{
		{"plain pod", mkPod("p"), map[string]string{
			"ready": "", "notready": "UU:" + ErrReasonNotReady, "unknown": "UU:" + ErrReasonNotReady,
			"noconditions": "", "nonetwork": "UU:" + ErrReasonNetworkUnavailable,
		}},
		{"tolerates not-ready", mkPod("p", podTolerations(v1.Toleration{Key: v1.TaintNodeNotReady, Operator: v1.TolerationOpExists})), map[string]string{
			"ready": "", "notready": "", "unknown": "", "noconditions": "", "nonetwork": "UU:" + ErrReasonNetworkUnavailable,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, NodeReady{}, tc.pod, cluster(t, nodes)), tc.want)
		})
	}
}
