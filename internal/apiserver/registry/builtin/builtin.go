// Package builtin lists every built-in resource the API server serves.
package builtin

import (
	"github.com/skiff-sh/skiff/internal/apiserver/registry"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/apps"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/autoscaling"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/batch"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/certificates"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/coordination"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/core"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/discovery"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/events"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/networking"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/policy"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/rbac"
	"github.com/skiff-sh/skiff/internal/apiserver/registry/scheduling"
)

// Resources returns the built-in resources, grouped by API group in the
// order discovery lists them.
func Resources() []*registry.Resource { return ResourcesWith(core.Options{}) }

// ResourcesWith is Resources with the core group's options.
func ResourcesWith(coreOpts core.Options) []*registry.Resource {
	var out []*registry.Resource
	for _, group := range [][]*registry.Resource{
		core.ResourcesWith(coreOpts),
		apps.Resources(),
		events.Resources(),
		autoscaling.Resources(),
		batch.Resources(),
		certificates.Resources(),
		networking.Resources(),
		policy.Resources(),
		rbac.Resources(),
		scheduling.Resources(),
		coordination.Resources(),
		discovery.Resources(),
	} {
		out = append(out, group...)
	}
	return out
}
