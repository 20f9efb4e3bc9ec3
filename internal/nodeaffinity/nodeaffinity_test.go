package nodeaffinity

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMatches(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"disk": "ssd", "gen": "5"}}}
	req := func(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, vals ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: vals}}}
	}
	field := func(op corev1.NodeSelectorOperator, vals ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: metav1.ObjectNameField, Operator: op, Values: vals}}}
	}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want bool
	}{
		{"nothing asked", corev1.PodSpec{}, true},
		{"nodeSelector match", corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}}, true},
		{"nodeSelector mismatch", corev1.PodSpec{NodeSelector: map[string]string{"disk": "hdd"}}, false},
		{"In", corev1.PodSpec{Affinity: req(expr("disk", corev1.NodeSelectorOpIn, "ssd", "nvme"))}, true},
		{"NotIn", corev1.PodSpec{Affinity: req(expr("disk", corev1.NodeSelectorOpNotIn, "ssd"))}, false},
		{"NotIn of a missing label", corev1.PodSpec{Affinity: req(expr("zone", corev1.NodeSelectorOpNotIn, "a"))}, true},
		{"Exists", corev1.PodSpec{Affinity: req(expr("gen", corev1.NodeSelectorOpExists))}, true},
		{"DoesNotExist", corev1.PodSpec{Affinity: req(expr("gen", corev1.NodeSelectorOpDoesNotExist))}, false},
		{"Gt", corev1.PodSpec{Affinity: req(expr("gen", corev1.NodeSelectorOpGt, "4"))}, true},
		{"Lt", corev1.PodSpec{Affinity: req(expr("gen", corev1.NodeSelectorOpLt, "5"))}, false},
		{"Gt of a non-number", corev1.PodSpec{Affinity: req(expr("disk", corev1.NodeSelectorOpGt, "1"))}, false},
		{"terms are ORed", corev1.PodSpec{Affinity: req(expr("disk", corev1.NodeSelectorOpIn, "hdd"), field(corev1.NodeSelectorOpIn, "n1"))}, true},
		{"empty term matches nothing", corev1.PodSpec{Affinity: req(corev1.NodeSelectorTerm{})}, false},
		{"field NotIn", corev1.PodSpec{Affinity: req(field(corev1.NodeSelectorOpNotIn, "n1"))}, false},
		{"field Exists is not a field operator", corev1.PodSpec{Affinity: req(field(corev1.NodeSelectorOpExists))}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Matches(&tc.spec, node); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}
