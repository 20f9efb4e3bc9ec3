// Package discovery describes the discovery.k8s.io/v1 API group's
// resources (endpointslices) and their strategy: upstream's defaults,
// validation and kubectl columns.
package discovery

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Resources returns the discovery.k8s.io/v1 resources the API server
// serves.
func Resources() []*registry.Resource {
	return []*registry.Resource{{
		GVK:    discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
		Plural: "endpointslices", Singular: "endpointslice", Namespaced: true,
		New:      func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:  func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Strategy: endpointSliceStrategy{},
	}}
}

// Upstream's limits.
const (
	maxTopologyLabels = 16
	maxAddresses      = 100
	maxPorts          = 20000
	maxEndpoints      = 1000
	maxZoneHints      = 8
	maxNodeHints      = 8
)

var (
	addressTypes = []discoveryv1.AddressType{discoveryv1.AddressTypeFQDN, discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}
	protocols    = []corev1.Protocol{corev1.ProtocolSCTP, corev1.ProtocolTCP, corev1.ProtocolUDP}
)

type endpointSliceStrategy struct{ registry.Base }

// Default gives every port a name ("") and protocol (TCP).
func (endpointSliceStrategy) Default(obj runtime.Object) {
	es := obj.(*discoveryv1.EndpointSlice)
	for i := range es.Ports {
		p := &es.Ports[i]
		if p.Name == nil {
			p.Name = new(string)
		}
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
	}
}

// ValidateCreate checks the address type, ports and endpoints.
func (endpointSliceStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validate(obj.(*discoveryv1.EndpointSlice), nil)
}

// ValidateUpdate also keeps the address type; invalid endpoints that did
// not change are tolerated.
func (endpointSliceStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	es, o := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
	errs := validate(es, o)
	return append(errs, apimachineryvalidation.ValidateImmutableField(es.AddressType, o.AddressType, field.NewPath("addressType"))...)
}

func validate(es, old *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	ap := field.NewPath("addressType")
	switch {
	case es.AddressType == "":
		errs = append(errs, field.Required(ap, ""))
	case !contains(addressTypes, es.AddressType):
		errs = append(errs, field.NotSupported(ap, es.AddressType, addressTypes))
	}
	errs = append(errs, validatePorts(es.Ports, field.NewPath("ports"))...)
	epErrs := validateEndpoints(es.Endpoints, es.AddressType, field.NewPath("endpoints"))
	if len(epErrs) > 0 && old != nil && equality.Semantic.DeepEqual(old.Endpoints, es.Endpoints) {
		epErrs = nil
	}
	return append(errs, epErrs...)
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func validateEndpoints(eps []discoveryv1.Endpoint, addrType discoveryv1.AddressType, path *field.Path) field.ErrorList {
	if len(eps) > maxEndpoints {
		return field.ErrorList{field.TooMany(path, len(eps), maxEndpoints)}
	}
	var errs field.ErrorList
	for i, ep := range eps {
		ip := path.Index(i)
		ap := ip.Child("addresses")
		switch {
		case len(ep.Addresses) == 0:
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		case len(ep.Addresses) > maxAddresses:
			errs = append(errs, field.TooMany(ap, len(ep.Addresses), maxAddresses))
		}
		for j, addr := range ep.Addresses {
			switch addrType {
			case discoveryv1.AddressTypeIPv4:
				if e := validation.IsValidIPForLegacyField(ap.Index(j), addr, false, nil); len(e) > 0 {
					errs = append(errs, e...)
					continue
				}
				if net.ParseIP(addr).To4() == nil {
					errs = append(errs, field.Invalid(ap, addr, "must be an IPv4 address"))
				}
				errs = append(errs, validateEndpointIP(addr, ap.Index(j))...)
			case discoveryv1.AddressTypeIPv6:
				if e := validation.IsValidIP(ap.Index(j), addr); len(e) > 0 {
					errs = append(errs, e...)
					continue
				}
				if net.ParseIP(addr).To4() != nil {
					errs = append(errs, field.Invalid(ap, addr, "must be an IPv6 address"))
				}
				errs = append(errs, validateEndpointIP(addr, ap.Index(j))...)
			case discoveryv1.AddressTypeFQDN:
				errs = append(errs, validation.IsFullyQualifiedDomainName(ap.Index(j), addr)...)
			}
		}
		if ep.NodeName != nil {
			for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(*ep.NodeName, false) {
				errs = append(errs, field.Invalid(ip.Child("nodeName"), *ep.NodeName, msg))
			}
		}
		tp := ip.Child("deprecatedTopology")
		if len(ep.DeprecatedTopology) > maxTopologyLabels {
			errs = append(errs, field.TooMany(tp, len(ep.DeprecatedTopology), maxTopologyLabels))
		}
		errs = append(errs, metav1validation.ValidateLabels(ep.DeprecatedTopology, tp)...)
		if _, ok := ep.DeprecatedTopology[corev1.LabelTopologyZone]; ok {
			errs = append(errs, field.InternalError(tp.Key(corev1.LabelTopologyZone), fmt.Errorf("reserved key was not removed in conversion")))
		}
		if ep.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*ep.Hostname) {
				errs = append(errs, field.Invalid(ip.Child("hostname"), *ep.Hostname, msg))
			}
		}
		if ep.Hints != nil {
			errs = append(errs, validateHints(ep.Hints, ip.Child("hints"))...)
		}
	}
	return errs
}

// validateEndpointIP rejects addresses an endpoint may not have.
func validateEndpointIP(addr string, path *field.Path) field.ErrorList {
	ip := net.ParseIP(addr)
	switch {
	case ip.IsUnspecified():
		return field.ErrorList{field.Invalid(path, addr, fmt.Sprintf("may not be unspecified (%v)", addr))}
	case ip.IsLoopback():
		return field.ErrorList{field.Invalid(path, addr, "may not be in the loopback range (127.0.0.0/8, ::1/128)")}
	case ip.IsLinkLocalUnicast():
		return field.ErrorList{field.Invalid(path, addr, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")}
	case ip.IsLinkLocalMulticast():
		return field.ErrorList{field.Invalid(path, addr, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")}
	}
	return nil
}

func validatePorts(ports []discoveryv1.EndpointPort, path *field.Path) field.ErrorList {
	if len(ports) > maxPorts {
		return field.ErrorList{field.TooMany(path, len(ports), maxPorts)}
	}
	var errs field.ErrorList
	names := map[string]bool{}
	for i, p := range ports {
		ip := path.Index(i)
		var name string
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			for _, msg := range validation.IsDNS1123Label(name) {
				errs = append(errs, field.Invalid(ip.Child("name"), name, msg))
			}
		}
		if names[name] {
			errs = append(errs, field.Duplicate(ip.Child("name"), p.Name))
		}
		names[name] = true
		switch {
		case p.Protocol == nil:
			errs = append(errs, field.Required(ip.Child("protocol"), ""))
		case !contains(protocols, *p.Protocol):
			errs = append(errs, field.NotSupported(ip.Child("protocol"), *p.Protocol, protocols))
		}
		if p.AppProtocol != nil {
			for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
				errs = append(errs, field.Invalid(ip.Child("appProtocol"), *p.AppProtocol, msg))
			}
		}
	}
	return errs
}

func validateHints(h *discoveryv1.EndpointHints, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	zp := path.Child("forZones")
	if len(h.ForZones) > maxZoneHints {
		return append(errs, field.TooMany(zp, len(h.ForZones), maxZoneHints))
	}
	zones := map[string]bool{}
	for i, z := range h.ForZones {
		p := zp.Index(i).Child("name")
		if zones[z.Name] {
			errs = append(errs, field.Duplicate(p, z.Name))
		}
		zones[z.Name] = true
		for _, msg := range validation.IsValidLabelValue(z.Name) {
			errs = append(errs, field.Invalid(p, z.Name, msg))
		}
	}
	np := path.Child("forNodes")
	if len(h.ForNodes) > maxNodeHints {
		return append(errs, field.TooMany(np, len(h.ForNodes), maxNodeHints))
	}
	nodes := map[string]bool{}
	for i, n := range h.ForNodes {
		p := np.Index(i).Child("name")
		if nodes[n.Name] {
			errs = append(errs, field.Duplicate(p, n.Name))
		}
		nodes[n.Name] = true
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(n.Name, false) {
			errs = append(errs, field.Invalid(p, n.Name, msg))
		}
	}
	return errs
}

// Columns are kubectl's endpointslice columns.
func (endpointSliceStrategy) Columns() []metav1.TableColumnDefinition {
	doc := discoveryv1.EndpointSlice{}.SwaggerDoc()
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "AddressType", Type: "string", Description: doc["addressType"]},
		{Name: "Ports", Type: "string", Description: doc["ports"]},
		{Name: "Endpoints", Type: "string", Description: doc["endpoints"]},
		registry.AgeColumn(),
	}
}

// Row prints one endpointslice; ports and endpoints show at most three
// entries.
func (endpointSliceStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	es := obj.(*discoveryv1.EndpointSlice)
	var ports []string
	for _, p := range es.Ports {
		switch {
		case p.Port != nil:
			ports = append(ports, strconv.Itoa(int(*p.Port)))
		case p.Name != nil:
			ports = append(ports, *p.Name)
		default:
			ports = append(ports, "*")
		}
	}
	var addrs []string
	for _, ep := range es.Endpoints {
		addrs = append(addrs, ep.Addresses...)
	}
	return []interface{}{es.Name, string(es.AddressType), listWithMore(ports), listWithMore(addrs), registry.Age(es.CreationTimestamp, now)}
}

// listWithMore joins up to three items, as kubectl prints them.
func listWithMore(items []string) string {
	const shown = 3
	if len(items) > shown {
		return fmt.Sprintf("%s + %d more...", strings.Join(items[:shown], ","), len(items)-shown)
	}
	if len(items) == 0 {
		return "<unset>"
	}
	return strings.Join(items, ",")
}
