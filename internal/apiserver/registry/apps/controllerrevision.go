package apps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

type controllerRevisionStrategy struct{ registry.Base }

// ValidateCreate checks the revision number and that data is a JSON
// object.
func (controllerRevisionStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	r := obj.(*appsv1.ControllerRevision)
	errs := nonNegative(r.Revision, field.NewPath("revision"))
	dp := field.NewPath("data")
	if r.Data.Raw == nil {
		return append(errs, field.Required(dp, "data is mandatory"))
	}
	var v any
	if err := json.Unmarshal(r.Data.Raw, &v); err != nil {
		return append(errs, field.Invalid(dp, "<value omitted>", fmt.Sprintf("error parsing data: %v", err.Error())))
	}
	if v == nil {
		return append(errs, field.Required(dp, "data is mandatory"))
	}
	if _, ok := v.(map[string]any); !ok {
		errs = append(errs, field.Required(dp, "data must be a valid JSON object"))
	}
	return errs
}

// ValidateUpdate checks the revision number and that data did not change.
func (controllerRevisionStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	r, o := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
	errs := nonNegative(r.Revision, field.NewPath("revision"))
	if !bytes.Equal(r.Data.Raw, o.Data.Raw) {
		errs = append(errs, field.Invalid(field.NewPath("data"), r.Data, "field is immutable"))
	}
	return errs
}

// Columns are kubectl's controllerrevision columns.
func (controllerRevisionStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Controller", "string", "Controller of the object", 0),
		col("Revision", "string", appsv1.ControllerRevision{}.SwaggerDoc()["revision"], 0),
		registry.AgeColumn(),
	}
}

// Row prints one controllerrevision; the controller is "<kind>.<group>/<name>".
func (controllerRevisionStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	r := obj.(*appsv1.ControllerRevision)
	controller := "<none>"
	if ref := metav1.GetControllerOf(r); ref != nil {
		controller = ref.Name
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil {
			if gk := gv.WithKind(ref.Kind).GroupKind(); !gk.Empty() {
				controller = strings.ToLower(gk.String()) + "/" + ref.Name
			}
		}
	}
	return []interface{}{r.Name, controller, r.Revision, registry.Age(r.CreationTimestamp, now)}
}
