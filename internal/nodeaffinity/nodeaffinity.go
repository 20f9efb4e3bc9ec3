// Package nodeaffinity decides whether a node satisfies a pod's
// nodeSelector and node affinity terms, with upstream's semantics. The
// scheduler's NodeAffinity and PodTopologySpread plugins and the DaemonSet
// controller share it.
package nodeaffinity

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Matches reports whether node satisfies spec's nodeSelector and its
// required node affinity (any one non-empty term; an empty term matches
// nothing).
func Matches(spec *corev1.PodSpec, node *corev1.Node) bool {
	for k, v := range spec.NodeSelector {
		if lv, ok := node.Labels[k]; !ok || lv != v {
			return false
		}
	}
	a := spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for i := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		t := &a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[i]
		if (len(t.MatchExpressions) > 0 || len(t.MatchFields) > 0) && MatchTerm(t, node) {
			return true
		}
	}
	return false
}

// MatchTerm ANDs a term's label expressions and field requirements (the
// only node field is metadata.name, with In or NotIn).
func MatchTerm(t *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	for i := range t.MatchExpressions {
		if !MatchExpression(&t.MatchExpressions[i], node.Labels) {
			return false
		}
	}
	for i := range t.MatchFields {
		r := &t.MatchFields[i]
		if r.Key != metav1.ObjectNameField {
			return false
		}
		in := slices.Contains(r.Values, node.Name)
		switch r.Operator {
		case corev1.NodeSelectorOpIn:
			if !in {
				return false
			}
		case corev1.NodeSelectorOpNotIn:
			if in {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// MatchExpression evaluates one label requirement against labels l.
func MatchExpression(r *corev1.NodeSelectorRequirement, l map[string]string) bool {
	v, ok := l[r.Key]
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return ok && slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !ok || !slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return ok
	case corev1.NodeSelectorOpDoesNotExist:
		return !ok
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !ok || len(r.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}
