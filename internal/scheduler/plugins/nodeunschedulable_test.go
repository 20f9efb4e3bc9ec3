package plugins

import (
	"testing"

	v1 "k8s.io/api/core/v1"
)

func TestNodeUnschedulable(t *testing.T) {
	cordoned := mkNode("cordoned", func(n *v1.Node) { n.Spec.Unschedulable = true })
	open := mkNode("open")
	tests := []struct {
		name string
		pod  *v1.Pod
		want map[string]string
	}{
		{"plain pod avoids cordoned node", mkPod("p"), map[string]string{"cordoned": "UU:" + ErrReasonUnschedulable, "open": ""}},
		{"toleration of unschedulable taint", mkPod("p", podTolerations(v1.Toleration{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoSchedule})),
			map[string]string{"cordoned": "", "open": ""}},
		{"toleration of everything", mkPod("p", podTolerations(v1.Toleration{Operator: v1.TolerationOpExists})), map[string]string{"cordoned": "", "open": ""}},
		{"toleration with other effect does not help", mkPod("p", podTolerations(v1.Toleration{Key: v1.TaintNodeUnschedulable, Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute})),
			map[string]string{"cordoned": "UU:" + ErrReasonUnschedulable, "open": ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assertMap(t, filter(t, NodeUnschedulable{}, tc.pod, cluster(t, []*v1.Node{cordoned, open})), tc.want)
		})
	}
}
