package events

import (
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func fullEvent() *eventsv1.Event {
	t0 := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	return &eventsv1.Event{
		TypeMeta:                 metav1.TypeMeta{APIVersion: "events.k8s.io/v1", Kind: "Event"},
		ObjectMeta:               metav1.ObjectMeta{Name: "web.17a", Namespace: "default", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"a": "b"}},
		EventTime:                metav1.NewMicroTime(t0),
		Series:                   &eventsv1.EventSeries{Count: 3, LastObservedTime: metav1.NewMicroTime(t0.Add(time.Minute))},
		ReportingController:      "skiff.dev/scheduler",
		ReportingInstance:        "scheduler-node1",
		Action:                   "Binding",
		Reason:                   "Scheduled",
		Regarding:                corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web", UID: "p1", APIVersion: "v1", ResourceVersion: "5", FieldPath: "spec.containers{web}"},
		Related:                  &corev1.ObjectReference{Kind: "Node", Name: "node1"},
		Note:                     "Successfully assigned default/web to node1",
		Type:                     corev1.EventTypeNormal,
		DeprecatedSource:         corev1.EventSource{Component: "scheduler", Host: "node1"},
		DeprecatedFirstTimestamp: metav1.NewTime(t0),
		DeprecatedLastTimestamp:  metav1.NewTime(t0.Add(time.Minute)),
		DeprecatedCount:          3,
	}
}

func TestConversion(t *testing.T) {
	in := fullEvent()
	stored, err := ToStorage(in)
	if err != nil {
		t.Fatal(err)
	}
	core := stored.(*corev1.Event)
	if core.Message != in.Note || core.InvolvedObject != in.Regarding || core.ReportingController != in.ReportingController ||
		core.ReportingInstance != in.ReportingInstance || core.Source != in.DeprecatedSource || core.Count != 3 ||
		!core.FirstTimestamp.Equal(&in.DeprecatedFirstTimestamp) || !core.LastTimestamp.Equal(&in.DeprecatedLastTimestamp) ||
		core.Series.Count != 3 || core.Action != "Binding" || core.Reason != "Scheduled" || core.Type != "Normal" ||
		core.Related.Name != "node1" || !core.EventTime.Equal(&in.EventTime) || core.APIVersion != "v1" || core.Name != in.Name {
		t.Errorf("core event %+v", core)
	}
	back, err := FromStorage(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, in) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, in)
	}
	// The input is not aliased.
	core.Labels["a"] = "changed"
	if in.Labels["a"] != "b" {
		t.Error("ToStorage shares maps with its input")
	}
	// Core → events → core also round-trips.
	orig := core.DeepCopy()
	ev, _ := FromStorage(orig)
	again, _ := ToStorage(ev)
	if !reflect.DeepEqual(again, orig) {
		t.Errorf("core round trip:\n got %+v\nwant %+v", again, orig)
	}
	// Empty objects and wrong types.
	if _, err := ToStorage(&eventsv1.Event{}); err != nil {
		t.Error(err)
	}
	if _, err := ToStorage(&corev1.Event{}); err == nil {
		t.Error("ToStorage accepted a core event")
	}
	if _, err := FromStorage(&eventsv1.Event{}); err == nil {
		t.Error("FromStorage accepted an events.k8s.io event")
	}
	r := Resources()[0]
	if r.Storage.Resource.Group != "" || r.Storage.Resource.Resource != "events" || r.Plural != "events" || !r.Namespaced ||
		r.GVK.Group != "events.k8s.io" || r.Singular != "event" {
		t.Errorf("resource %+v", r)
	}
}

func newEvent() *eventsv1.Event {
	return &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Name: "e", Namespace: "default"},
		EventTime:           metav1.NewMicroTime(time.Now()),
		ReportingController: "skiff.dev/controller",
		ReportingInstance:   "c-1",
		Action:              "Create",
		Reason:              "Created",
		Regarding:           corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "p"},
		Type:                corev1.EventTypeNormal,
	}
}

func TestValidate(t *testing.T) {
	s := Resources()[0].Strategy
	tests := []struct {
		name   string
		modify func(*eventsv1.Event)
		want   []string
	}{
		{"valid", func(*eventsv1.Event) {}, nil},
		{"no event time", func(e *eventsv1.Event) { e.EventTime = metav1.MicroTime{} }, []string{"eventTime"}},
		{"bad type", func(e *eventsv1.Event) { e.Type = "Info" }, []string{"type"}},
		{"missing fields", func(e *eventsv1.Event) {
			e.ReportingController, e.ReportingInstance, e.Action, e.Reason = "", "", "", ""
		},
			[]string{"reportingController", "reportingController", "reportingController", "reportingInstance", "action", "reason"}}, // required, and not a qualified name (twice)
		{"namespace mismatch", func(e *eventsv1.Event) { e.Regarding.Namespace = "other" }, nil},
		{"deprecated set", func(e *eventsv1.Event) { e.DeprecatedCount = 2; e.DeprecatedSource.Component = "x" }, []string{"count", "source"}},
		{"short series", func(e *eventsv1.Event) { e.Series = &eventsv1.EventSeries{Count: 1} }, []string{"series.count", "series.lastObservedTime"}},
	}
	for _, tt := range tests {
		e := newEvent()
		tt.modify(e)
		errs := s.ValidateCreate(e)
		var got []string
		for _, err := range errs {
			got = append(got, err.Field)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: errors %v, want fields %v", tt.name, errs, tt.want)
		}
	}
	old := newEvent()
	cur := old.DeepCopy()
	cur.Series = &eventsv1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(time.Now())}
	if errs := s.ValidateUpdate(cur, old); len(errs) != 0 {
		t.Errorf("series update: %v", errs)
	}
	cur.Note = "changed"
	errs := s.ValidateUpdate(cur, old)
	if len(errs) != 1 || errs[0].Field != "message" || errs[0].Type != field.ErrorTypeInvalid {
		t.Errorf("note change: %v", errs)
	}
}

func TestFieldsAndRow(t *testing.T) {
	s := Resources()[0].Strategy
	if n := len(s.Fields(&eventsv1.Event{})); n != 10 {
		t.Errorf("%d fields", n)
	}
	e := fullEvent()
	f := s.Fields(e)
	if f["regarding.name"] != "web" || f["regarding.kind"] != "Pod" || f["reportingController"] != "skiff.dev/scheduler" ||
		f["reason"] != "Scheduled" || f["type"] != "Normal" || f["regarding.fieldPath"] != "spec.containers{web}" {
		t.Errorf("fields %v", f)
	}
	now := e.EventTime.Add(11 * time.Minute)
	want := []interface{}{"10m", "Normal", "Scheduled", "pod/web", "spec.containers{web}", "scheduler, node1",
		"Successfully assigned default/web to node1", "11m", int64(3), "web.17a"}
	if got := s.Row(e, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	// A singleton new-style event: times from eventTime, count 1, source from reporting fields.
	n := newEvent()
	n.EventTime = metav1.NewMicroTime(now.Add(-2 * time.Minute))
	want = []interface{}{"2m", "Normal", "Created", "pod/p", "", "skiff.dev/controller, c-1", "", "2m", int64(1), "e"}
	if got := s.Row(n, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	if len(s.Columns()) != len(want) {
		t.Errorf("%d columns", len(s.Columns()))
	}
}
