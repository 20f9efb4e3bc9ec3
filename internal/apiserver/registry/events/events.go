// Package events describes the events.k8s.io/v1 API group's resources
// (events), which are stored as core/v1 Events: the conversion between the
// two, the events.k8s.io validation, field-selector fields and kubectl
// columns.
package events

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Resources returns the events.k8s.io/v1 resources the API server serves.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GVK:    eventsv1.SchemeGroupVersion.WithKind("Event"),
		Plural: "events", Singular: "event", ShortNames: []string{"ev"}, Namespaced: true,
		New:     func() runtime.Object { return &eventsv1.Event{} },
		NewList: func() runtime.Object { return &eventsv1.EventList{} },
		Storage: &registry.Storage{
			Resource:    schema.GroupResource{Group: "", Resource: "events"},
			ToStorage:   ToStorage,
			FromStorage: FromStorage,
		},
		Strategy: eventStrategy{},
	}}
}

// ToStorage converts an events.k8s.io/v1 Event to the core/v1 Event it is
// stored as.
func ToStorage(obj runtime.Object) (runtime.Object, error) {
	in, ok := obj.(*eventsv1.Event)
	if !ok {
		return nil, fmt.Errorf("events: expected *v1.Event from events.k8s.io, got %T", obj)
	}
	in = in.DeepCopy()
	out := &corev1.Event{
		TypeMeta:            metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:          in.ObjectMeta,
		InvolvedObject:      in.Regarding,
		Reason:              in.Reason,
		Message:             in.Note,
		Source:              in.DeprecatedSource,
		FirstTimestamp:      in.DeprecatedFirstTimestamp,
		LastTimestamp:       in.DeprecatedLastTimestamp,
		Count:               in.DeprecatedCount,
		Type:                in.Type,
		EventTime:           in.EventTime,
		Action:              in.Action,
		Related:             in.Related,
		ReportingController: in.ReportingController,
		ReportingInstance:   in.ReportingInstance,
	}
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	return out, nil
}

// FromStorage converts a stored core/v1 Event to events.k8s.io/v1.
func FromStorage(obj runtime.Object) (runtime.Object, error) {
	in, ok := obj.(*corev1.Event)
	if !ok {
		return nil, fmt.Errorf("events: expected core *v1.Event, got %T", obj)
	}
	in = in.DeepCopy()
	out := &eventsv1.Event{
		TypeMeta:                 metav1.TypeMeta{APIVersion: eventsv1.SchemeGroupVersion.String(), Kind: "Event"},
		ObjectMeta:               in.ObjectMeta,
		EventTime:                in.EventTime,
		ReportingController:      in.ReportingController,
		ReportingInstance:        in.ReportingInstance,
		Action:                   in.Action,
		Reason:                   in.Reason,
		Regarding:                in.InvolvedObject,
		Related:                  in.Related,
		Note:                     in.Message,
		Type:                     in.Type,
		DeprecatedSource:         in.Source,
		DeprecatedFirstTimestamp: in.FirstTimestamp,
		DeprecatedLastTimestamp:  in.LastTimestamp,
		DeprecatedCount:          in.Count,
	}
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	return out, nil
}

// Upstream's length limits.
const (
	reportingInstanceLengthLimit = 128
	actionLengthLimit            = 128
	reasonLengthLimit            = 128
	noteLengthLimit              = 1024
)

type eventStrategy struct{ registry.Base }

// ValidateCreate applies events.k8s.io/v1's strict event validation.
func (eventStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	e := obj.(*eventsv1.Event)
	errs := validateCommon(e)
	errs = append(errs, validateSeries(e)...)
	if e.EventTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
	}
	if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.Invalid(field.NewPath("type"), "", fmt.Sprintf("has invalid value: %v", e.Type)))
	}
	// The deprecated fields carry the core/v1 names in upstream's errors.
	if !e.DeprecatedFirstTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("firstTimestamp"), "", "needs to be unset"))
	}
	if !e.DeprecatedLastTimestamp.IsZero() {
		errs = append(errs, field.Invalid(field.NewPath("lastTimestamp"), "", "needs to be unset"))
	}
	if e.DeprecatedCount != 0 {
		errs = append(errs, field.Invalid(field.NewPath("count"), "", "needs to be unset"))
	}
	if e.DeprecatedSource.Component != "" || e.DeprecatedSource.Host != "" {
		errs = append(errs, field.Invalid(field.NewPath("source"), "", "needs to be unset"))
	}
	return errs
}

// ValidateUpdate allows only the series (and metadata) to change.
func (eventStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	e, o := obj.(*eventsv1.Event), old.(*eventsv1.Event)
	errs := validateCommon(e)
	if !equality.Semantic.DeepEqual(e.Series, o.Series) {
		errs = append(errs, validateSeries(e)...)
	}
	imm := func(cur, prev any, name string) {
		errs = append(errs, apimachineryvalidation.ValidateImmutableField(cur, prev, field.NewPath(name))...)
	}
	imm(e.Regarding, o.Regarding, "involvedObject")
	imm(e.Reason, o.Reason, "reason")
	imm(e.Note, o.Note, "message")
	imm(e.DeprecatedSource, o.DeprecatedSource, "source")
	imm(e.DeprecatedFirstTimestamp, o.DeprecatedFirstTimestamp, "firstTimestamp")
	imm(e.DeprecatedLastTimestamp, o.DeprecatedLastTimestamp, "lastTimestamp")
	imm(e.DeprecatedCount, o.DeprecatedCount, "count")
	imm(e.Type, o.Type, "type")
	if !e.EventTime.Truncate(time.Microsecond).UTC().Equal(o.EventTime.Truncate(time.Microsecond).UTC()) {
		imm(e.EventTime, o.EventTime, "eventTime")
	}
	imm(e.Action, o.Action, "action")
	imm(e.Related, o.Related, "related")
	imm(e.ReportingController, o.ReportingController, "reportingController")
	imm(e.ReportingInstance, o.ReportingInstance, "reportingInstance")
	return errs
}

// validateCommon is upstream's legacy event validation as it applies to
// events.k8s.io/v1.
func validateCommon(e *eventsv1.Event) field.ErrorList {
	var errs field.ErrorList
	inp := field.NewPath("involvedObject", "namespace")
	if e.EventTime.IsZero() {
		if e.Regarding.Namespace == "" {
			if e.Namespace != metav1.NamespaceNone && e.Namespace != metav1.NamespaceDefault {
				errs = append(errs, field.Invalid(inp, e.Regarding.Namespace, "does not match event.namespace"))
			}
		} else if e.Namespace != e.Regarding.Namespace {
			errs = append(errs, field.Invalid(inp, e.Regarding.Namespace, "does not match event.namespace"))
		}
	} else {
		if e.Regarding.Namespace == "" && e.Namespace != metav1.NamespaceDefault && e.Namespace != metav1.NamespaceSystem {
			errs = append(errs, field.Invalid(inp, e.Regarding.Namespace, "does not match event.namespace"))
		}
		rc := field.NewPath("reportingController")
		if e.ReportingController == "" {
			errs = append(errs, field.Required(rc, ""))
		}
		for _, msg := range validation.IsQualifiedName(e.ReportingController) {
			errs = append(errs, field.Invalid(rc, e.ReportingController, msg))
		}
		errs = append(errs, requiredMax(e.ReportingInstance, reportingInstanceLengthLimit, "reportingInstance")...)
		errs = append(errs, requiredMax(e.Action, actionLengthLimit, "action")...)
		errs = append(errs, requiredMax(e.Reason, reasonLengthLimit, "reason")...)
		if len(e.Note) > noteLengthLimit {
			errs = append(errs, field.Invalid(field.NewPath("message"), "", fmt.Sprintf("can have at most %v characters", noteLengthLimit)))
		}
	}
	for _, msg := range validation.IsDNS1123Subdomain(e.Namespace) {
		errs = append(errs, field.Invalid(field.NewPath("namespace"), e.Namespace, msg))
	}
	return errs
}

func requiredMax(v string, limit int, name string) field.ErrorList {
	p := field.NewPath(name)
	var errs field.ErrorList
	if v == "" {
		errs = append(errs, field.Required(p, ""))
	}
	if len(v) > limit {
		errs = append(errs, field.Invalid(p, "", fmt.Sprintf("can have at most %v characters", limit)))
	}
	return errs
}

func validateSeries(e *eventsv1.Event) field.ErrorList {
	if e.Series == nil {
		return nil
	}
	var errs field.ErrorList
	if e.Series.Count < 2 {
		errs = append(errs, field.Invalid(field.NewPath("series.count"), "", "should be at least 2"))
	}
	if e.Series.LastObservedTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("series.lastObservedTime"), ""))
	}
	return errs
}

// Fields are upstream's events.k8s.io/v1 field-selector fields, which map
// onto the core/v1 ones.
func (eventStrategy) Fields(obj runtime.Object) fields.Set {
	e := obj.(*eventsv1.Event)
	r := &e.Regarding
	return fields.Set{
		"reason":                    e.Reason,
		"regarding.kind":            r.Kind,
		"regarding.namespace":       r.Namespace,
		"regarding.name":            r.Name,
		"regarding.uid":             string(r.UID),
		"regarding.apiVersion":      r.APIVersion,
		"regarding.resourceVersion": r.ResourceVersion,
		"regarding.fieldPath":       r.FieldPath,
		"reportingController":       e.ReportingController,
		"type":                      e.Type,
	}
}

// Columns are kubectl's event columns (upstream prints events.k8s.io
// events with the core printer).
func (eventStrategy) Columns() []metav1.TableColumnDefinition {
	doc := corev1.Event{}.SwaggerDoc()
	return []metav1.TableColumnDefinition{
		{Name: "Last Seen", Type: "string", Description: doc["lastTimestamp"]},
		{Name: "Type", Type: "string", Description: doc["type"]},
		{Name: "Reason", Type: "string", Description: doc["reason"]},
		{Name: "Object", Type: "string", Description: doc["involvedObject"]},
		{Name: "Subobject", Type: "string", Priority: 1, Description: corev1.ObjectReference{}.SwaggerDoc()["fieldPath"]},
		{Name: "Source", Type: "string", Priority: 1, Description: doc["source"]},
		{Name: "Message", Type: "string", Description: doc["message"]},
		{Name: "First Seen", Type: "string", Priority: 1, Description: doc["firstTimestamp"]},
		{Name: "Count", Type: "string", Priority: 1, Description: doc["count"]},
		{Name: "Name", Type: "string", Priority: 1, Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	}
}

// Row prints one event.
func (eventStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	e := obj.(*eventsv1.Event)
	first := registry.Age(e.DeprecatedFirstTimestamp, now)
	if e.DeprecatedFirstTimestamp.IsZero() {
		first = microAge(e.EventTime, now)
	}
	last := registry.Age(e.DeprecatedLastTimestamp, now)
	if e.DeprecatedLastTimestamp.IsZero() {
		last = first
	}
	count := e.DeprecatedCount
	if e.Series != nil {
		last = microAge(e.Series.LastObservedTime, now)
		count = e.Series.Count
	} else if count == 0 {
		count = 1
	}
	target := strings.ToLower(e.Regarding.Kind)
	if e.Regarding.Name != "" {
		target += "/" + e.Regarding.Name
	}
	component, instance := e.DeprecatedSource.Component, e.DeprecatedSource.Host
	if component == "" {
		component = e.ReportingController
	}
	if instance == "" {
		instance = e.ReportingInstance
	}
	source := component
	if instance != "" {
		source += ", " + instance
	}
	return []interface{}{last, e.Type, e.Reason, target, e.Regarding.FieldPath, source,
		strings.TrimSpace(e.Note), first, int64(count), e.Name}
}

func microAge(t metav1.MicroTime, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return registry.Age(metav1.NewTime(t.Time), now)
}
