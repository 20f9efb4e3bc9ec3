// Package registry describes the REST resources the API server serves: their
// names, scope, Go types and the per-resource strategy (defaults, validation,
// field-selector fields and the columns kubectl prints).
//
// The API server is generic: everything that differs between resources lives
// behind a Resource value built by the group packages below this one
// (registry/core, registry/apps, ...).
package registry

import (
	"reflect"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resource is one REST resource, such as apps/v1 deployments.
type Resource struct {
	// GVK is the group, version and kind served, e.g. apps/v1 Deployment.
	GVK schema.GroupVersionKind
	// Plural is the resource name in URLs ("deployments").
	Plural string
	// Singular is the lower-case singular name ("deployment").
	Singular string
	// ShortNames are kubectl's abbreviations ("deploy").
	ShortNames []string
	// Categories groups resources for kubectl ("all").
	Categories []string
	// Namespaced is true for namespace-scoped resources.
	Namespaced bool
	// New returns an empty typed object (e.g. &appsv1.Deployment{}).
	New func() runtime.Object
	// NewList returns an empty typed list (e.g. &appsv1.DeploymentList{}).
	NewList func() runtime.Object
	// Status is true when the resource has a status subresource.
	Status bool
	// Subresources names further subresources that, like status, read and
	// write the whole object (certificatesigningrequests/approval); the
	// Strategy must implement SubresourceStrategy.
	Subresources []string
	// Scale, when set, gives the resource a scale subresource.
	Scale *Scale
	// Verbs lists the verbs served; nil means all of get, list, watch,
	// create, update, patch, delete, deletecollection.
	Verbs []string
	// Strategy holds the per-resource behaviour.
	Strategy Strategy
	// Storage, when set, stores this resource as another resource's type
	// (events.k8s.io/v1 Event is stored as core/v1 Event).
	Storage *Storage
}

// Storage converts a resource to and from the resource it is stored as.
type Storage struct {
	// Resource is the resource whose keys and type hold the data.
	Resource schema.GroupResource
	// ToStorage converts a served object to the stored type.
	ToStorage func(runtime.Object) (runtime.Object, error)
	// FromStorage converts a stored object to the served type.
	FromStorage func(runtime.Object) (runtime.Object, error)
}

// Scale reads and writes the replica count behind a scale subresource.
type Scale struct {
	// Replicas returns spec.replicas, status.replicas and the label selector
	// string (as in autoscaling/v1 Scale status.selector).
	Get func(obj runtime.Object) (specReplicas, statusReplicas int32, selector string)
	// Set sets spec.replicas.
	Set func(obj runtime.Object, replicas int32)
}

// Strategy is what differs between resources. Embed Base to get defaults
// for the methods a resource does not need.
type Strategy interface {
	// Default fills defaulted fields, as upstream's defaulters do. It runs
	// on create, update and patch, before validation.
	Default(obj runtime.Object)
	// PrepareForCreate clears what a client may not set on create (such as
	// status for resources with a status subresource).
	PrepareForCreate(obj runtime.Object)
	// PrepareForUpdate adjusts an update of the main resource (not of
	// status): for resources with a status subresource the generic server
	// already copied old's status into obj before this is called.
	PrepareForUpdate(obj, old runtime.Object)
	// ValidateCreate checks a new object. Object metadata (name, labels,
	// annotations, ...) is validated by the server; this checks the rest.
	ValidateCreate(obj runtime.Object) field.ErrorList
	// ValidateUpdate checks an update of the main resource, including
	// immutable fields.
	ValidateUpdate(obj, old runtime.Object) field.ErrorList
	// ValidateStatusUpdate checks an update through the status subresource.
	ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList
	// Fields returns the object's field-selector fields beyond
	// metadata.name and metadata.namespace (which the server adds). Every
	// supported field must be present, with "" when unset, because the set
	// returned for an empty object is the list of supported fields.
	Fields(obj runtime.Object) fields.Set
	// Columns returns the table columns kubectl prints, Name first, in
	// upstream's order; columns with Priority 1 show only with -o wide.
	Columns() []metav1.TableColumnDefinition
	// Row returns one table row's cells, matching Columns.
	Row(obj runtime.Object, now time.Time) []interface{}
}

// UserInfo is the authenticated user behind a request.
type UserInfo struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// RequesterStrategy is implemented by strategies that record who creates
// an object (CertificateSigningRequest's spec.username and groups). The
// server calls SetRequester on create, after PrepareForCreate.
type RequesterStrategy interface {
	SetRequester(obj runtime.Object, u UserInfo)
}

// SubresourceStrategy is implemented by strategies of resources with
// Subresources. The server calls PrepareForSubresourceUpdate for writes
// through those and through status (before ValidateStatusUpdate), with
// sub naming the subresource, then Default, then (for Subresources only)
// ValidateSubresourceUpdate.
type SubresourceStrategy interface {
	PrepareForSubresourceUpdate(sub string, obj, old runtime.Object)
	ValidateSubresourceUpdate(sub string, obj, old runtime.Object) field.ErrorList
}

// Base gives a Strategy's methods the behaviour of a resource with no
// special needs: no defaults, no validation beyond metadata, and NAME, AGE
// columns.
type Base struct{}

// Default does nothing.
func (Base) Default(runtime.Object) {}

// PrepareForCreate does nothing.
func (Base) PrepareForCreate(runtime.Object) {}

// PrepareForUpdate does nothing.
func (Base) PrepareForUpdate(_, _ runtime.Object) {}

// ValidateCreate accepts everything.
func (Base) ValidateCreate(runtime.Object) field.ErrorList { return nil }

// ValidateUpdate accepts everything.
func (Base) ValidateUpdate(_, _ runtime.Object) field.ErrorList { return nil }

// ValidateStatusUpdate accepts everything.
func (Base) ValidateStatusUpdate(_, _ runtime.Object) field.ErrorList { return nil }

// Fields returns no extra fields.
func (Base) Fields(runtime.Object) fields.Set { return fields.Set{} }

// Columns returns NAME and AGE.
func (Base) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{NameColumn(), AgeColumn()}
}

// Row returns the name and age.
func (Base) Row(obj runtime.Object, now time.Time) []interface{} {
	m := Meta(obj)
	return []interface{}{m.GetName(), Age(m.GetCreationTimestamp(), now)}
}

// NameColumn is the first column of every table.
func NameColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"}
}

// AgeColumn is the AGE column.
func AgeColumn() metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}
}

// Age formats a creation timestamp the way kubectl prints AGE ("<unknown>"
// when unset).
func Age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// Meta returns the object's metadata accessor; it panics if obj has none,
// which is a programming error for every registered type.
func Meta(obj runtime.Object) metav1.Object {
	m, ok := obj.(metav1.Object)
	if !ok {
		panic("registry: object has no metadata: " + reflect.TypeOf(obj).String())
	}
	return m
}
