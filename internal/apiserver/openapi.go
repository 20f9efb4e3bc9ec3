package apiserver

import (
	"fmt"

	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	"net/http"
	"sigs.k8s.io/yaml"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// openapi serves a minimal OpenAPI v3 document per group version: the
// paths and their PATCH operations, which kubectl reads to learn that the
// server validates fields itself (the fieldValidation parameter). Schemas
// are not published yet, so kubectl builds strategic merge patches from
// its built-in types and `kubectl explain` has nothing to show. /openapi/v2
// carries the same for kubectl 1.27 and 1.28.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/openapi/")
	switch {
	case p == "v2" || p == "v2/":
		s.openapiV2(w, r)
		return
	case p == "v3" || p == "v3/":
		paths := map[string]any{}
		for _, gv := range s.groups {
			rel := gvPath(gv.gv)
			doc, _ := json.Marshal(s.openapiDoc(gv))
			sum := sha512.Sum512(doc)
			paths[rel] = map[string]string{"serverRelativeURL": "/openapi/v3/" + rel + "?hash=" + strings.ToUpper(hex.EncodeToString(sum[:]))}
		}
		s.writeJSON(w, http.StatusOK, map[string]any{"paths": paths})
		return
	case strings.HasPrefix(p, "v3/"):
		rel := strings.TrimPrefix(p, "v3/")
		for _, gv := range s.groups {
			if gvPath(gv.gv) == rel {
				w.Header().Set("Cache-Control", "public, immutable")
				s.writeJSON(w, http.StatusOK, s.openapiDoc(gv))
				return
			}
		}
	}
	s.writeError(w, r, apierrors.NewNotFound(schema.GroupResource{}, ""))
}

func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

func (s *Server) openapiDoc(gv groupVersion) map[string]any {
	paths := map[string]any{}
	param := []map[string]any{
		{"name": "dryRun", "in": "query", "schema": map[string]string{"type": "string"}},
		{"name": "fieldManager", "in": "query", "schema": map[string]string{"type": "string"}},
		{"name": "fieldValidation", "in": "query", "schema": map[string]string{"type": "string"}},
	}
	body := map[string]any{"content": map[string]any{
		"application/json-patch+json":  map[string]any{"schema": map[string]string{"type": "object"}},
		"application/merge-patch+json": map[string]any{"schema": map[string]string{"type": "object"}},
	}, "required": true}
	for _, r := range gv.resources {
		base := "/" + gvPath(gv.gv) + "/"
		if r.Namespaced {
			base += "namespaces/{namespace}/"
		}
		gvk := map[string]string{"group": r.GVK.Group, "version": r.GVK.Version, "kind": r.GVK.Kind}
		op := map[string]any{
			"operationId":                     "patch" + r.GVK.Kind,
			"parameters":                      param,
			"requestBody":                     body,
			"responses":                       map[string]any{"200": map[string]any{"description": "OK"}},
			"x-kubernetes-action":             "patch",
			"x-kubernetes-group-version-kind": gvk,
		}
		paths[base+r.Plural+"/{name}"] = map[string]any{"patch": op}
		if r.Status {
			paths[base+r.Plural+"/{name}/status"] = map[string]any{"patch": op}
		}
	}
	return map[string]any{
		"openapi":    "3.0.0",
		"info":       map[string]string{"title": "Kubernetes", "version": s.cfg.Version.GitVersion},
		"paths":      paths,
		"components": map[string]any{"schemas": map[string]any{}},
	}
}

// openapiV2 serves the same minimal document as OpenAPI v2: kubectl 1.27
// and 1.28 read it (as protobuf) to learn that the server supports the
// fieldValidation parameter.
func (s *Server) openapiV2(w http.ResponseWriter, r *http.Request) {
	doc := &openapiv2.Document{
		Swagger: "2.0",
		Info:    &openapiv2.Info{Title: "Kubernetes", Version: s.cfg.Version.GitVersion},
		Paths:   &openapiv2.Paths{},
	}
	for _, gv := range s.groups {
		for _, res := range gv.resources {
			base := "/" + gvPath(gv.gv) + "/"
			if res.Namespaced {
				base += "namespaces/{namespace}/"
			}
			gvkYAML := fmt.Sprintf("group: %q\nkind: %s\nversion: %s\n", res.GVK.Group, res.GVK.Kind, res.GVK.Version)
			var params []*openapiv2.ParametersItem
			for _, name := range []string{"dryRun", "fieldManager", "fieldValidation"} {
				params = append(params, &openapiv2.ParametersItem{Oneof: &openapiv2.ParametersItem_Parameter{
					Parameter: &openapiv2.Parameter{Oneof: &openapiv2.Parameter_NonBodyParameter{
						NonBodyParameter: &openapiv2.NonBodyParameter{Oneof: &openapiv2.NonBodyParameter_QueryParameterSubSchema{
							QueryParameterSubSchema: &openapiv2.QueryParameterSubSchema{Name: name, In: "query", Type: "string"},
						}},
					}},
				}})
			}
			op := &openapiv2.Operation{
				OperationId: "patch" + res.GVK.Kind,
				Parameters:  params,
				Responses: &openapiv2.Responses{ResponseCode: []*openapiv2.NamedResponseValue{{Name: "200",
					Value: &openapiv2.ResponseValue{Oneof: &openapiv2.ResponseValue_Response{Response: &openapiv2.Response{Description: "OK"}}}}}},
				VendorExtension: []*openapiv2.NamedAny{{Name: "x-kubernetes-group-version-kind", Value: &openapiv2.Any{Yaml: gvkYAML}}},
			}
			doc.Paths.Path = append(doc.Paths.Path, &openapiv2.NamedPathItem{Name: base + res.Plural + "/{name}", Value: &openapiv2.PathItem{Patch: op}})
		}
	}
	if strings.Contains(r.Header.Get("Accept"), "protobuf") {
		data, err := proto.Marshal(doc)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
		_, _ = w.Write(data)
		return
	}
	y, err := doc.YAMLValue("")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	js, err := yaml.YAMLToJSON(y)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", mediaJSON)
	_, _ = w.Write(js)
}
