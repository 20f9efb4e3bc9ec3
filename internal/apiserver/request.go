package apiserver

import (
	"net/http"
	"strings"
)

// requestInfo is what a resource URL says.
type requestInfo struct {
	verb        string
	group       string
	version     string
	namespace   string
	resource    string
	name        string
	subresource string
	// rest is anything after the subresource (pod proxy paths).
	rest string
}

// parseResourcePath parses /api/v1/... and /apis/g/v/... paths. ok is false
// when the path is not a resource path (discovery paths are handled before).
func parseResourcePath(r *http.Request) (requestInfo, bool) {
	p := strings.Trim(r.URL.Path, "/")
	parts := strings.Split(p, "/")
	var ri requestInfo
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		ri.version = parts[1]
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		ri.group, ri.version = parts[1], parts[2]
		parts = parts[3:]
	default:
		return ri, false
	}
	watchPath := false
	if parts[0] == "watch" {
		watchPath = true
		parts = parts[1:]
		if len(parts) == 0 {
			return ri, false
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		ri.namespace = parts[1]
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		} else {
			// the namespace object itself
			ri.namespace = ""
		}
	}
	ri.resource = parts[0]
	if len(parts) > 1 {
		ri.name = parts[1]
	}
	if len(parts) > 2 {
		ri.subresource = parts[2]
	}
	if len(parts) > 3 {
		ri.rest = strings.Join(parts[3:], "/")
	}
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watchPath || q.Get("watch") == "true" || q.Get("watch") == "1":
			ri.verb = "watch"
		case ri.name == "":
			ri.verb = "list"
		default:
			ri.verb = "get"
		}
	case http.MethodPost:
		ri.verb = "create"
	case http.MethodPut:
		ri.verb = "update"
	case http.MethodPatch:
		ri.verb = "patch"
	case http.MethodDelete:
		if ri.name == "" {
			ri.verb = "deletecollection"
		} else {
			ri.verb = "delete"
		}
	default:
		ri.verb = strings.ToLower(r.Method)
	}
	return ri, true
}
