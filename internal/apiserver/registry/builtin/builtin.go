// Package builtin lists every built-in resource the API server serves.
package builtin

import (
	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/core"
)

// Resources returns the built-in resources, grouped by API group in the
// order discovery lists them.
func Resources() []*registry.Resource {
	var out []*registry.Resource
	for _, group := range [][]*registry.Resource{
		core.Resources(),
	} {
		out = append(out, group...)
	}
	return out
}
