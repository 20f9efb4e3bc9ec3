package scheduling

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestPriorityClass(t *testing.T) {
	r := Resources()[0]
	if r.Plural != "priorityclasses" || r.Singular != "priorityclass" || !reflect.DeepEqual(r.ShortNames, []string{"pc"}) || r.Namespaced {
		t.Errorf("resource %+v", r)
	}
	s := r.Strategy
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000}
	s.Default(pc)
	if pc.PreemptionPolicy == nil || *pc.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Errorf("preemption default %v", pc.PreemptionPolicy)
	}
	never := corev1.PreemptNever
	bogus := corev1.PreemptionPolicy("Sometimes")
	tests := []struct {
		name  string
		pc    schedulingv1.PriorityClass
		field string
		typ   field.ErrorType
	}{
		{"user class", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: HighestUserDefinablePriority}, "", ""},
		{"never", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "batch"}, Value: -5, PreemptionPolicy: &never}, "", ""},
		{"too high", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: HighestUserDefinablePriority + 1}, "value", field.ErrorTypeForbidden},
		{"system prefix", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-mine"}, Value: 5}, "metadata.name", field.ErrorTypeForbidden},
		{"system class wrong value", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 5}, "metadata.name", field.ErrorTypeForbidden},
		{"system class", *SystemPriorityClasses()[0], "", ""},
		{"bad policy", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "x"}, PreemptionPolicy: &bogus}, "preemptionPolicy", field.ErrorTypeNotSupported},
	}
	for _, tt := range tests {
		errs := s.ValidateCreate(&tt.pc)
		switch {
		case tt.field == "" && len(errs) != 0:
			t.Errorf("%s: %v", tt.name, errs)
		case tt.field != "" && (len(errs) != 1 || errs[0].Field != tt.field || errs[0].Type != tt.typ):
			t.Errorf("%s: %v, want %s %s", tt.name, errs, tt.typ, tt.field)
		}
	}
	errs := s.ValidateCreate(&schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 5})
	if len(errs) != 1 || !strings.Contains(errs[0].Detail, "value of system-node-critical PriorityClass must be 2000001000") {
		t.Errorf("system class detail %v", errs)
	}
	cur := pc.DeepCopy()
	cur.Value = 2000
	cur.PreemptionPolicy = &never
	errs = s.ValidateUpdate(cur, pc)
	if len(errs) != 2 || errs[0].Field != "value" || errs[1].Field != "preemptionPolicy" {
		t.Errorf("update errors %v", errs)
	}
	cur = pc.DeepCopy()
	cur.Description = "new"
	if errs := s.ValidateUpdate(cur, pc); len(errs) != 0 {
		t.Errorf("description change: %v", errs)
	}

	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	pc.CreationTimestamp = metav1.NewTime(now.Add(-26 * time.Hour))
	pc.GlobalDefault = true
	if got, want := s.Row(pc, now), []interface{}{"high", int64(1000), true, "26h", "PreemptLowerPriority"}; !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	var names []string
	for _, c := range s.Columns() {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"Name", "Value", "Global-Default", "Age", "PreemptionPolicy"}) {
		t.Errorf("columns %v", names)
	}
}
