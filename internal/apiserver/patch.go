package apiserver

import (
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

// maxJSONPatchOps bounds the operations of one JSON patch.
const maxJSONPatchOps = 10000

// applyPatch applies a patch of type pt to the JSON of the current object.
// schemaObj is an empty object of the resource's Go type, which gives
// strategic merge patch its merge keys.
func applyPatch(pt types.PatchType, current, patch []byte, schemaObj runtime.Object) ([]byte, error) {
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the JSON patch is not valid: %v", err))
		}
		if len(p) > maxJSONPatchOps {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the JSON patch has %d operations, more than the %d allowed", len(p), maxJSONPatchOps))
		}
		out, err := p.Apply(current)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(422, "patch", schema.GroupResource{}, "", fmt.Sprintf("the JSON patch cannot be applied: %v", err), 0, false)
		}
		return out, nil
	case types.MergePatchType:
		js, err := toJSON(patch)
		if err != nil {
			return nil, err
		}
		out, err := jsonpatch.MergePatch(current, js)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the merge patch is not valid: %v", err))
		}
		return out, nil
	case types.StrategicMergePatchType:
		js, err := toJSON(patch)
		if err != nil {
			return nil, err
		}
		out, err := strategicpatch.StrategicMergePatch(current, js, schemaObj)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the strategic merge patch is not valid: %v", err))
		}
		return out, nil
	case types.ApplyYAMLPatchType, types.ApplyCBORPatchType:
		return nil, apierrors.NewGenericServerResponse(415, "patch", schema.GroupResource{}, "", "server-side apply is not supported by skiff yet: use client-side `kubectl apply` (without --server-side)", 0, false)
	}
	return nil, apierrors.NewGenericServerResponse(415, "patch", schema.GroupResource{}, "", fmt.Sprintf("the patch content type %q is not supported: use application/json-patch+json, application/merge-patch+json or application/strategic-merge-patch+json", string(pt)), 0, false)
}

// toJSON returns a merge patch's body as JSON: JSON as it is (what clients
// send; converting it through YAML cost a third of each status patch),
// YAML converted.
func toJSON(b []byte) ([]byte, error) {
	if json.Valid(b) {
		return b, nil
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the patch is not valid JSON or YAML: %v", err))
	}
	return js, nil
}
