package apiserver

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// openapi serves a minimal OpenAPI v3 document per group version: the
// paths and their PATCH operations, which kubectl reads to learn that the
// server validates fields itself (the fieldValidation parameter). Schemas
// are not published yet, so kubectl builds strategic merge patches from
// its built-in types and `kubectl explain` has nothing to show.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/openapi/")
	switch {
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
