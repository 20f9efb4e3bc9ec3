package networking

import (
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

const maxControllerLength = 250

var parameterScopes = []string{networkingv1.IngressClassParametersReferenceScopeCluster, networkingv1.IngressClassParametersReferenceScopeNamespace}

type ingressClassStrategy struct{ registry.Base }

// Default sets the parameters' scope to Cluster.
func (ingressClassStrategy) Default(obj runtime.Object) {
	c := obj.(*networkingv1.IngressClass)
	if p := c.Spec.Parameters; p != nil && p.Scope == nil {
		scope := networkingv1.IngressClassParametersReferenceScopeCluster
		p.Scope = &scope
	}
}

// ValidateCreate checks the controller and parameters.
func (ingressClassStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateIngressClassSpec(&obj.(*networkingv1.IngressClass).Spec, field.NewPath("spec"))
}

// ValidateUpdate also keeps the controller.
func (ingressClassStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	c, o := obj.(*networkingv1.IngressClass), old.(*networkingv1.IngressClass)
	errs := apimachineryvalidation.ValidateImmutableField(c.Spec.Controller, o.Spec.Controller, field.NewPath("spec", "controller"))
	return append(errs, validateIngressClassSpec(&c.Spec, field.NewPath("spec"))...)
}

func validateIngressClassSpec(s *networkingv1.IngressClassSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.Controller) > maxControllerLength {
		errs = append(errs, field.TooLong(p.Child("controller"), "", maxControllerLength))
	}
	errs = append(errs, validation.IsDomainPrefixedPath(p.Child("controller"), s.Controller)...)
	params := s.Parameters
	if params == nil {
		return errs
	}
	pp := p.Child("parameters")
	errs = append(errs, validateTypedRef(params.APIGroup, params.Kind, params.Name, pp)...)
	if params.Scope == nil {
		return append(errs, field.Required(pp.Child("scope"), ""))
	}
	switch *params.Scope {
	case networkingv1.IngressClassParametersReferenceScopeNamespace:
		if params.Namespace == nil {
			errs = append(errs, field.Required(pp.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
		} else {
			errs = append(errs, messages(pp.Child("namespace"), *params.Namespace, apimachineryvalidation.NameIsDNSLabel(*params.Namespace, false))...)
		}
	case networkingv1.IngressClassParametersReferenceScopeCluster:
		if params.Namespace != nil {
			errs = append(errs, field.Forbidden(pp.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
		}
	default:
		errs = append(errs, field.NotSupported(pp.Child("scope"), *params.Scope, parameterScopes))
	}
	return errs
}

// Columns are kubectl's ingressclass columns.
func (ingressClassStrategy) Columns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		col("Controller", "string", "Controller that is responsible for handling this class"),
		col("Parameters", "string", "A reference to a resource with additional parameters"),
		registry.AgeColumn(),
	}
}

// Row prints one ingressclass; parameters show as "Kind[.group]/name".
func (ingressClassStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	c := obj.(*networkingv1.IngressClass)
	params := "<none>"
	if p := c.Spec.Parameters; p != nil {
		params = p.Kind
		if p.APIGroup != nil {
			params += "." + *p.APIGroup
		}
		params += "/" + p.Name
	}
	return []interface{}{c.Name, c.Spec.Controller, params, registry.Age(c.CreationTimestamp, now)}
}
