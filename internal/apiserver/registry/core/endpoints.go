package core

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// endpointsStrategy implements endpoints.
type endpointsStrategy struct{ registry.Base }

// Default sets port protocols to TCP.
func (endpointsStrategy) Default(obj runtime.Object) {
	ep := obj.(*corev1.Endpoints)
	for i := range ep.Subsets {
		for j := range ep.Subsets[i].Ports {
			if ep.Subsets[i].Ports[j].Protocol == "" {
				ep.Subsets[i].Ports[j].Protocol = corev1.ProtocolTCP
			}
		}
	}
}

// ValidateCreate checks addresses and ports.
func (endpointsStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateEndpointSubsets(obj.(*corev1.Endpoints).Subsets, field.NewPath("subsets"))
}

// ValidateUpdate checks addresses and ports.
func (endpointsStrategy) ValidateUpdate(obj, _ runtime.Object) field.ErrorList {
	return validateEndpointSubsets(obj.(*corev1.Endpoints).Subsets, field.NewPath("subsets"))
}

func validateEndpointSubsets(subsets []corev1.EndpointSubset, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i := range subsets {
		ss := &subsets[i]
		p := fldPath.Index(i)
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			errs = append(errs, field.Required(p, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j := range ss.Addresses {
			errs = append(errs, validateEndpointAddress(&ss.Addresses[j], p.Child("addresses").Index(j))...)
		}
		for j := range ss.NotReadyAddresses {
			errs = append(errs, validateEndpointAddress(&ss.NotReadyAddresses[j], p.Child("notReadyAddresses").Index(j))...)
		}
		for j, port := range ss.Ports {
			pp := p.Child("ports").Index(j)
			if len(ss.Ports) > 1 && port.Name == "" {
				errs = append(errs, field.Required(pp.Child("name"), ""))
			} else if port.Name != "" {
				errs = append(errs, validateDNS1123Label(port.Name, pp.Child("name"))...)
			}
			for _, msg := range validation.IsValidPortNum(int(port.Port)) {
				errs = append(errs, field.Invalid(pp.Child("port"), port.Port, msg))
			}
			errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
			if port.AppProtocol != nil {
				errs = append(errs, validateQualifiedName(*port.AppProtocol, pp.Child("appProtocol"))...)
			}
		}
	}
	return errs
}

func validateEndpointAddress(a *corev1.EndpointAddress, fldPath *field.Path) field.ErrorList {
	ipPath := fldPath.Child("ip")
	errs := validation.IsValidIPForLegacyField(ipPath, a.IP, false, nil)
	if a.Hostname != "" {
		errs = append(errs, validateDNS1123Label(a.Hostname, fldPath.Child("hostname"))...)
	}
	if a.NodeName != nil {
		errs = append(errs, validateDNS1123Subdomain(*a.NodeName, fldPath.Child("nodeName"))...)
	}
	ip := net.ParseIP(a.IP)
	if ip == nil {
		return append(errs, field.Invalid(ipPath, a.IP, "must be a valid IP address"))
	}
	if ip.IsUnspecified() {
		errs = append(errs, field.Invalid(ipPath, a.IP, fmt.Sprintf("may not be unspecified (%v)", a.IP)))
	}
	if ip.IsLoopback() {
		errs = append(errs, field.Invalid(ipPath, a.IP, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
	}
	if ip.IsLinkLocalUnicast() {
		errs = append(errs, field.Invalid(ipPath, a.IP, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
	}
	if ip.IsLinkLocalMulticast() {
		errs = append(errs, field.Invalid(ipPath, a.IP, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
	}
	return errs
}

// Columns returns NAME, ENDPOINTS, AGE.
func (endpointsStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Endpoints", Type: "string", Description: "The addresses and ports of the endpoints."},
		registry.AgeColumn(),
	}
}

// Row returns the endpoints' cells.
func (endpointsStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	ep := obj.(*corev1.Endpoints)
	return []interface{}{ep.Name, formatEndpoints(ep), registry.Age(ep.CreationTimestamp, now)}
}

// formatEndpoints lists up to three addresses, then "+ N more...".
func formatEndpoints(ep *corev1.Endpoints) string {
	if len(ep.Subsets) == 0 {
		return "<none>"
	}
	const maxShown = 3
	var list []string
	more := false
	count := 0
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			count += len(ss.Addresses)
			for _, a := range ss.Addresses {
				if len(list) == maxShown {
					more = true
					break
				}
				list = append(list, a.IP)
			}
			continue
		}
		for _, port := range ss.Ports {
			count += len(ss.Addresses)
			for _, a := range ss.Addresses {
				if len(list) == maxShown {
					more = true
					break
				}
				list = append(list, net.JoinHostPort(a.IP, strconv.Itoa(int(port.Port))))
			}
		}
	}
	s := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", s, count-maxShown)
	}
	return s
}
