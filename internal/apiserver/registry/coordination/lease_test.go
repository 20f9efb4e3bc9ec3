package coordination

import (
	"reflect"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func ptr[T any](v T) *T { return &v }

func TestLease(t *testing.T) {
	r := Resources()[0]
	if r.Plural != "leases" || r.Singular != "lease" || !r.Namespaced || len(r.ShortNames) != 0 || r.GVK.Group != "coordination.k8s.io" {
		t.Errorf("resource %+v", r)
	}
	s := r.Strategy
	tests := []struct {
		name string
		spec coordinationv1.LeaseSpec
		want []string
	}{
		{"valid", coordinationv1.LeaseSpec{HolderIdentity: ptr("node1"), LeaseDurationSeconds: ptr(int32(40)), LeaseTransitions: ptr(int32(0))}, nil},
		{"zero duration", coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr(int32(0))}, []string{"spec.leaseDurationSeconds"}},
		{"negative transitions", coordinationv1.LeaseSpec{LeaseTransitions: ptr(int32(-1))}, []string{"spec.leaseTransitions"}},
		{"unknown strategy", coordinationv1.LeaseSpec{Strategy: ptr(coordinationv1.CoordinatedLeaseStrategy("Youngest"))}, []string{"spec.strategy.strategy"}},
		{"custom strategy", coordinationv1.LeaseSpec{Strategy: ptr(coordinationv1.CoordinatedLeaseStrategy("example.com/mine"))}, nil},
		{"holder without strategy", coordinationv1.LeaseSpec{PreferredHolder: ptr("n")}, []string{"spec.preferredHolder"}},
	}
	for _, tt := range tests {
		l := &coordinationv1.Lease{Spec: tt.spec}
		var got []string
		for _, e := range s.ValidateCreate(l) {
			got = append(got, e.Field)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: errors at %v, want %v", tt.name, got, tt.want)
		}
		if len(s.ValidateUpdate(l, l)) != len(tt.want) {
			t.Errorf("%s: update validation differs", tt.name)
		}
	}
	errs := s.ValidateCreate(&coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr(int32(-5))}})
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeInvalid || errs[0].Detail != "must be greater than 0" {
		t.Errorf("errors %v", errs)
	}

	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node1", CreationTimestamp: metav1.NewTime(now.Add(-90 * time.Second))},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr("node1")}}
	if got, want := s.Row(l, now), []interface{}{"node1", "node1", "90s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row %v, want %v", got, want)
	}
	if got := s.Row(&coordinationv1.Lease{}, now); !reflect.DeepEqual(got, []interface{}{"", "", "<unknown>"}) {
		t.Errorf("empty row %v", got)
	}
	var names []string
	for _, c := range s.Columns() {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"Name", "Holder", "Age"}) {
		t.Errorf("columns %v", names)
	}
}
