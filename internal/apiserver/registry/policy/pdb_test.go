package policy

import (
	"reflect"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func ptr[T any](v T) *T { return &v }

func TestPDB(t *testing.T) {
	r := Resources()[0]
	if r.Plural != "poddisruptionbudgets" || r.Singular != "poddisruptionbudget" || !reflect.DeepEqual(r.ShortNames, []string{"pdb"}) ||
		!r.Namespaced || !r.Status || len(r.Categories) != 0 {
		t.Errorf("resource %+v", r)
	}
	s := r.Strategy
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	tests := []struct {
		name string
		spec policyv1.PodDisruptionBudgetSpec
		want []string
		typ  field.ErrorType
	}{
		{"min available", policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(2)), Selector: sel}, nil, ""},
		{"max unavailable percent", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromString("50%")), Selector: sel}, nil, ""},
		{"both", policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(1))}, []string{"spec"}, field.ErrorTypeInvalid},
		{"negative", policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr(intstr.FromInt32(-1))}, []string{"spec.minAvailable"}, field.ErrorTypeInvalid},
		{"over 100%", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromString("120%"))}, []string{"spec.maxUnavailable"}, field.ErrorTypeInvalid},
		{"bad policy", policyv1.PodDisruptionBudgetSpec{UnhealthyPodEvictionPolicy: ptr(policyv1.UnhealthyPodEvictionPolicyType("Never"))},
			[]string{"spec.unhealthyPodEvictionPolicy"}, field.ErrorTypeNotSupported},
	}
	for _, tt := range tests {
		p := &policyv1.PodDisruptionBudget{Spec: tt.spec}
		s.Default(p)
		errs := s.ValidateCreate(p)
		var got []string
		for _, e := range errs {
			got = append(got, e.Field)
			if e.Type != tt.typ {
				t.Errorf("%s: type %s, want %s", tt.name, e.Type, tt.typ)
			}
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, errs, tt.want)
		}
	}
	if errs := s.ValidateCreate(&policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{
		MinAvailable: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(1))}}); errs[0].Detail != "minAvailable and maxUnavailable cannot be both set" {
		t.Errorf("detail %q", errs[0].Detail)
	}
	st := &policyv1.PodDisruptionBudget{Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: -1}}
	if errs := s.ValidateStatusUpdate(st, &policyv1.PodDisruptionBudget{}); len(errs) != 1 || errs[0].Field != "status.disruptionsAllowed" {
		t.Errorf("status errors %v", errs)
	}

	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	p := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", CreationTimestamp: metav1.NewTime(now.Add(-10 * time.Second))},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ptr(intstr.FromString("25%"))}, Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 1}}
	if got, want := s.Row(p, now), []interface{}{"web", "N/A", "25%", int64(1), "10s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	var names []string
	for _, c := range s.Columns() {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"}) {
		t.Errorf("columns %v", names)
	}
}
