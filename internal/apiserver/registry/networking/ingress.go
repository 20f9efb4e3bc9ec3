package networking

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

const ingressClassAnnotation = "kubernetes.io/ingress.class"

var (
	pathTypes            = []string{string(networkingv1.PathTypeExact), string(networkingv1.PathTypeImplementationSpecific), string(networkingv1.PathTypePrefix)}
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

type ingressStrategy struct{ registry.Base }

// PrepareForCreate clears the status.
func (ingressStrategy) PrepareForCreate(obj runtime.Object) {
	obj.(*networkingv1.Ingress).Status = networkingv1.IngressStatus{}
}

// ValidateCreate checks the spec and that a kubernetes.io/ingress.class
// annotation agrees with spec.ingressClassName.
func (ingressStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	ing := obj.(*networkingv1.Ingress)
	errs := validateIngressSpec(&ing.Spec, field.NewPath("spec"), ingressOptions{})
	if v, ok := ing.Annotations[ingressClassAnnotation]; ok && ing.Spec.IngressClassName != nil && v != *ing.Spec.IngressClassName {
		errs = append(errs, field.Invalid(field.NewPath("annotations").Child(ingressClassAnnotation), v, "must match `ingressClassName` when both are specified"))
	}
	return errs
}

// ValidateUpdate checks the spec, tolerating invalid secret names and
// wildcard rules that the old object already had.
func (ingressStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	ing, o := obj.(*networkingv1.Ingress), old.(*networkingv1.Ingress)
	opts := ingressOptions{}
	for _, t := range o.Spec.TLS {
		opts.allowInvalidSecretName = opts.allowInvalidSecretName || len(validateTLSSecretName(t.SecretName)) > 0
	}
	for _, r := range o.Spec.Rules {
		if strings.Contains(r.Host, "*") && len(validateIngressRuleValue(&r.IngressRuleValue, field.NewPath("spec"), ingressOptions{})) > 0 {
			opts.allowInvalidWildcardHostRule = true
		}
	}
	return validateIngressSpec(&ing.Spec, field.NewPath("spec"), opts)
}

// ValidateStatusUpdate checks the load balancer addresses.
func (ingressStrategy) ValidateStatusUpdate(obj, old runtime.Object) field.ErrorList {
	st, o := &obj.(*networkingv1.Ingress).Status.LoadBalancer, &old.(*networkingv1.Ingress).Status.LoadBalancer
	var oldIPs []string
	for _, i := range o.Ingress {
		if i.IP != "" {
			oldIPs = append(oldIPs, i.IP)
		}
	}
	var errs field.ErrorList
	for i, in := range st.Ingress {
		p := field.NewPath("status", "loadBalancer", "ingress").Index(i)
		if in.IP != "" {
			errs = append(errs, validation.IsValidIPForLegacyField(p.Child("ip"), in.IP, false, oldIPs)...)
		}
		if in.Hostname != "" {
			errs = append(errs, messages(p.Child("hostname"), in.Hostname, validation.IsDNS1123Subdomain(in.Hostname))...)
			if net.ParseIP(in.Hostname) != nil {
				errs = append(errs, field.Invalid(p.Child("hostname"), in.Hostname, "must be a DNS name, not an IP address"))
			}
		}
	}
	return errs
}

type ingressOptions struct {
	allowInvalidSecretName       bool
	allowInvalidWildcardHostRule bool
}

func validateIngressSpec(s *networkingv1.IngressSpec, p *field.Path, opts ingressOptions) field.ErrorList {
	var errs field.ErrorList
	if len(s.Rules) == 0 && s.DefaultBackend == nil {
		errs = append(errs, field.Invalid(p, s.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if s.DefaultBackend != nil {
		errs = append(errs, validateBackend(s.DefaultBackend, p.Child("defaultBackend"))...)
	}
	for i, r := range s.Rules {
		rp := p.Child("rules").Index(i)
		wildcard := false
		if r.Host != "" {
			if net.ParseIP(r.Host) != nil {
				errs = append(errs, field.Invalid(rp.Child("host"), r.Host, "must be a DNS name, not an IP address"))
			}
			if strings.Contains(r.Host, "*") {
				errs = append(errs, messages(rp.Child("host"), r.Host, validation.IsWildcardDNS1123Subdomain(r.Host))...)
				wildcard = true
			} else {
				errs = append(errs, messages(rp.Child("host"), r.Host, validation.IsDNS1123Subdomain(r.Host))...)
			}
		}
		if !wildcard || !opts.allowInvalidWildcardHostRule {
			errs = append(errs, validateIngressRuleValue(&r.IngressRuleValue, rp, opts)...)
		}
	}
	for ti, t := range s.TLS {
		tp := p.Child("tls").Index(ti)
		for i, h := range t.Hosts {
			if strings.Contains(h, "*") {
				errs = append(errs, messages(tp.Child("hosts").Index(i), h, validation.IsWildcardDNS1123Subdomain(h))...)
				continue
			}
			errs = append(errs, messages(tp.Child("hosts").Index(i), h, validation.IsDNS1123Subdomain(h))...)
		}
		if !opts.allowInvalidSecretName {
			errs = append(errs, messages(tp.Child("secretName"), t.SecretName, validateTLSSecretName(t.SecretName))...)
		}
	}
	if s.IngressClassName != nil {
		errs = append(errs, messages(p.Child("ingressClassName"), *s.IngressClassName, apimachineryvalidation.NameIsDNSSubdomain(*s.IngressClassName, false))...)
	}
	return errs
}

func validateTLSSecretName(name string) []string {
	if name == "" {
		return nil
	}
	return apimachineryvalidation.NameIsDNSSubdomain(name, false)
}

func validateIngressRuleValue(r *networkingv1.IngressRuleValue, p *field.Path, _ ingressOptions) field.ErrorList {
	if r.HTTP == nil {
		return nil
	}
	hp := p.Child("http")
	var errs field.ErrorList
	if len(r.HTTP.Paths) == 0 {
		errs = append(errs, field.Required(hp.Child("paths"), ""))
	}
	for i := range r.HTTP.Paths {
		errs = append(errs, validateHTTPPath(&r.HTTP.Paths[i], hp.Child("paths").Index(i))...)
	}
	return errs
}

func validateHTTPPath(hp *networkingv1.HTTPIngressPath, p *field.Path) field.ErrorList {
	if hp.PathType == nil {
		return field.ErrorList{field.Required(p.Child("pathType"), "pathType must be specified")}
	}
	var errs field.ErrorList
	switch *hp.PathType {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
		if !strings.HasPrefix(hp.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), hp.Path, "must be an absolute path"))
		}
		for _, seq := range invalidPathSequences {
			if strings.Contains(hp.Path, seq) {
				errs = append(errs, field.Invalid(p.Child("path"), hp.Path, fmt.Sprintf("must not contain '%s'", seq)))
			}
		}
		for _, suf := range invalidPathSuffixes {
			if strings.HasSuffix(hp.Path, suf) {
				errs = append(errs, field.Invalid(p.Child("path"), hp.Path, fmt.Sprintf("cannot end with '%s'", suf)))
			}
		}
	case networkingv1.PathTypeImplementationSpecific:
		if hp.Path != "" && !strings.HasPrefix(hp.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("path"), hp.Path, "must be an absolute path"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("pathType"), *hp.PathType, pathTypes))
	}
	return append(errs, validateBackend(&hp.Backend, p.Child("backend"))...)
}

func validateBackend(b *networkingv1.IngressBackend, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Resource != nil && b.Service != nil:
		return field.ErrorList{field.Invalid(p, "", "cannot set both resource and service backends")}
	case b.Resource != nil:
		errs = append(errs, validateTypedRef(b.Resource.APIGroup, b.Resource.Kind, b.Resource.Name, p.Child("resource"))...)
	case b.Service != nil:
		svc := b.Service
		if svc.Name == "" {
			errs = append(errs, field.Required(p.Child("service", "name"), ""))
		} else {
			errs = append(errs, messages(p.Child("service", "name"), svc.Name, apimachineryvalidation.NameIsDNS1035Label(svc.Name, false))...)
		}
		hasName, hasNumber := svc.Port.Name != "", svc.Port.Number != 0
		switch {
		case hasName && hasNumber:
			errs = append(errs, field.Invalid(p, "", "cannot set both port name & port number"))
		case hasName:
			errs = append(errs, messages(p.Child("service", "port", "name"), svc.Port.Name, validation.IsValidPortName(svc.Port.Name))...)
		case hasNumber:
			errs = append(errs, messages(p.Child("service", "port", "number"), svc.Port.Number, validation.IsValidPortNum(int(svc.Port.Number)))...)
		default:
			errs = append(errs, field.Required(p, "port name or number is required"))
		}
	default:
		errs = append(errs, field.Invalid(p, "", "resource or service backend is required"))
	}
	return errs
}

// validateTypedRef checks a typed local object reference (a resource
// backend or an ingress class's parameters).
func validateTypedRef(group *string, kind, name string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if group != nil {
		errs = append(errs, messages(p.Child("apiGroup"), *group, validation.IsDNS1123Subdomain(*group))...)
	}
	if kind == "" {
		errs = append(errs, field.Required(p.Child("kind"), "kind is required"))
	} else {
		errs = append(errs, messages(p.Child("kind"), kind, path.IsValidPathSegmentName(kind))...)
	}
	if name == "" {
		errs = append(errs, field.Required(p.Child("name"), "name is required"))
	} else {
		errs = append(errs, messages(p.Child("name"), name, path.IsValidPathSegmentName(name))...)
	}
	return errs
}

// Columns are kubectl's ingress columns.
func (ingressStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Class", "string", "The name of the IngressClass resource that should be used for additional configuration"),
		col("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule"),
		col("Address", "string", "Address is a list containing ingress points for the load-balancer"),
		col("Ports", "string", "Ports of TLS configurations that open"),
		registry.AgeColumn(),
	}
}

// Row prints one ingress.
func (ingressStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	ing := obj.(*networkingv1.Ingress)
	class := "<none>"
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	ports := "80"
	if len(ing.Spec.TLS) > 0 {
		ports = "80, 443"
	}
	return []interface{}{ing.Name, class, ingressHosts(ing.Spec.Rules), ingressAddress(ing.Status.LoadBalancer), ports, registry.Age(ing.CreationTimestamp, now)}
}

// ingressHosts lists up to three rule hosts, "*" when none has one.
func ingressHosts(rules []networkingv1.IngressRule) string {
	const shown = 3
	var list []string
	more := false
	for _, r := range rules {
		if len(list) == shown {
			more = true
		}
		if !more && r.Host != "" {
			list = append(list, r.Host)
		}
	}
	if len(list) == 0 {
		return "*"
	}
	out := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", out, len(rules)-shown)
	}
	return out
}

// ingressAddress lists the sorted, unique load balancer IPs or hostnames.
func ingressAddress(lb networkingv1.IngressLoadBalancerStatus) string {
	seen := map[string]bool{}
	var out []string
	for _, i := range lb.Ingress {
		v := i.IP
		if v == "" {
			v = i.Hostname
		}
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}
