// Package rbac describes the rbac.authorization.k8s.io/v1 API group's
// resources (roles, rolebindings, clusterroles, clusterrolebindings) and
// their strategies: upstream's defaults, validation and kubectl columns.
// The objects are stored and validated; authorization is not enforced
// here.
package rbac

import (
	"fmt"
	"strings"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// Resources returns the rbac.authorization.k8s.io/v1 resources the API
// server serves.
func Resources() []*registry.Resource {
	gvk := rbacv1.SchemeGroupVersion.WithKind
	return []*registry.Resource{
		{
			GVK: gvk("ClusterRoleBinding"), Plural: "clusterrolebindings", Singular: "clusterrolebinding",
			New:      func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
			NewList:  func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
			Strategy: clusterRoleBindingStrategy{},
		},
		{
			GVK: gvk("ClusterRole"), Plural: "clusterroles", Singular: "clusterrole",
			New:      func() runtime.Object { return &rbacv1.ClusterRole{} },
			NewList:  func() runtime.Object { return &rbacv1.ClusterRoleList{} },
			Strategy: clusterRoleStrategy{},
		},
		{
			GVK: gvk("RoleBinding"), Plural: "rolebindings", Singular: "rolebinding", Namespaced: true,
			New:      func() runtime.Object { return &rbacv1.RoleBinding{} },
			NewList:  func() runtime.Object { return &rbacv1.RoleBindingList{} },
			Strategy: roleBindingStrategy{},
		},
		{
			GVK: gvk("Role"), Plural: "roles", Singular: "role", Namespaced: true,
			New:      func() runtime.Object { return &rbacv1.Role{} },
			NewList:  func() runtime.Object { return &rbacv1.RoleList{} },
			Strategy: roleStrategy{},
		},
	}
}

// roleColumns are the default table's columns, which upstream uses for
// roles and clusterroles.
func roleColumns() []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
	}
}

func roleRow(m metav1.Object) []interface{} {
	return []interface{}{m.GetName(), m.GetCreationTimestamp().UTC().Format(time.RFC3339)}
}

func validateRules(rules []rbacv1.PolicyRule, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		p := field.NewPath("rules").Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(p.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), r.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				errs = append(errs, field.Invalid(p.Child("nonResourceURLs"), r.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(p.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, field.Required(p.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return errs
}

type roleStrategy struct{ registry.Base }

// ValidateCreate checks the rules.
func (roleStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateRules(obj.(*rbacv1.Role).Rules, true)
}

// ValidateUpdate checks the rules.
func (roleStrategy) ValidateUpdate(obj, _ runtime.Object) field.ErrorList {
	return validateRules(obj.(*rbacv1.Role).Rules, true)
}

// Columns are NAME and CREATED AT.
func (roleStrategy) Columns() []metav1.TableColumnDefinition { return roleColumns() }

// Row prints one role.
func (roleStrategy) Row(obj runtime.Object, _ time.Time) []interface{} {
	return roleRow(registry.Meta(obj))
}

type clusterRoleStrategy struct{ registry.Base }

// ValidateCreate checks the rules and aggregation selectors.
func (clusterRoleStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	return validateClusterRole(obj.(*rbacv1.ClusterRole), false)
}

// ValidateUpdate checks the rules and aggregation selectors, tolerating
// invalid label values the old object had.
func (clusterRoleStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	allow := false
	if ar := old.(*rbacv1.ClusterRole).AggregationRule; ar != nil {
		for i := range ar.ClusterRoleSelectors {
			allow = allow || metav1validation.LabelSelectorHasInvalidLabelValue(&ar.ClusterRoleSelectors[i])
		}
	}
	return validateClusterRole(obj.(*rbacv1.ClusterRole), allow)
}

func validateClusterRole(r *rbacv1.ClusterRole, allowInvalidLabelValue bool) field.ErrorList {
	errs := validateRules(r.Rules, false)
	if r.AggregationRule == nil {
		return errs
	}
	sp := field.NewPath("aggregationRule", "clusterRoleSelectors")
	if len(r.AggregationRule.ClusterRoleSelectors) == 0 {
		errs = append(errs, field.Required(sp, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
	}
	opts := metav1validation.LabelSelectorValidationOptions{AllowInvalidLabelValueInSelector: allowInvalidLabelValue}
	for i := range r.AggregationRule.ClusterRoleSelectors {
		sel := &r.AggregationRule.ClusterRoleSelectors[i]
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, opts, sp.Index(i))...)
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(sp.Index(i), sel, "invalid label selector."))
		}
	}
	return errs
}

// Columns are NAME and CREATED AT.
func (clusterRoleStrategy) Columns() []metav1.TableColumnDefinition { return roleColumns() }

// Row prints one clusterrole.
func (clusterRoleStrategy) Row(obj runtime.Object, _ time.Time) []interface{} {
	return roleRow(registry.Meta(obj))
}

// defaultBinding fills the API groups of the role reference and subjects.
func defaultBinding(ref *rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup == "" {
		ref.APIGroup = rbacv1.GroupName
	}
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup == "" && (s.Kind == rbacv1.UserKind || s.Kind == rbacv1.GroupKind) {
			s.APIGroup = rbacv1.GroupName
		}
	}
}

func validateBinding(ref rbacv1.RoleRef, subjects []rbacv1.Subject, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	rp := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(rp.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	kinds := []string{"ClusterRole"}
	if namespaced {
		kinds = []string{"Role", "ClusterRole"}
	}
	okKind := false
	for _, k := range kinds {
		okKind = okKind || k == ref.Kind
	}
	if !okKind {
		errs = append(errs, field.NotSupported(rp.Child("kind"), ref.Kind, kinds))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(rp.Child("name"), ""))
	} else {
		for _, msg := range path.IsValidPathSegmentName(ref.Name) {
			errs = append(errs, field.Invalid(rp.Child("name"), ref.Name, msg))
		}
	}
	for i, s := range subjects {
		p := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.Name != "" {
				for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(s.Name, false) {
					errs = append(errs, field.Invalid(p.Child("name"), s.Name, msg))
				}
			}
			if s.APIGroup != "" {
				errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{""}))
			}
			if !namespaced && s.Namespace == "" {
				errs = append(errs, field.Required(p.Child("namespace"), ""))
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if s.APIGroup != rbacv1.GroupName {
				errs = append(errs, field.NotSupported(p.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("kind"), s.Kind, []string{rbacv1.ServiceAccountKind, rbacv1.UserKind, rbacv1.GroupKind}))
		}
	}
	return errs
}

func validateRoleRefUpdate(ref, old rbacv1.RoleRef) field.ErrorList {
	if ref != old {
		return field.ErrorList{field.Invalid(field.NewPath("roleRef"), ref, "cannot change roleRef")}
	}
	return nil
}

// bindingColumns are kubectl's rolebinding and clusterrolebinding columns.
func bindingColumns(kind string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn(),
		{Name: "Role", Type: "string", Description: rbacv1.RoleBinding{}.SwaggerDoc()["roleRef"]},
		registry.AgeColumn(),
		{Name: "Users", Type: "string", Priority: 1, Description: "Users in the " + kind},
		{Name: "Groups", Type: "string", Priority: 1, Description: "Groups in the " + kind},
		{Name: "ServiceAccounts", Type: "string", Priority: 1, Description: "ServiceAccounts in the " + kind},
	}
}

func bindingRow(m metav1.Object, ref rbacv1.RoleRef, subjects []rbacv1.Subject, now time.Time) []interface{} {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			sas = append(sas, fmt.Sprintf("%s/%s", s.Namespace, s.Name))
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		}
	}
	return []interface{}{m.GetName(), ref.Kind + "/" + ref.Name, registry.Age(m.GetCreationTimestamp(), now),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
}

type roleBindingStrategy struct{ registry.Base }

// Default fills the API groups of the role reference and subjects.
func (roleBindingStrategy) Default(obj runtime.Object) {
	b := obj.(*rbacv1.RoleBinding)
	defaultBinding(&b.RoleRef, b.Subjects)
}

// ValidateCreate checks the role reference and subjects.
func (roleBindingStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	b := obj.(*rbacv1.RoleBinding)
	return validateBinding(b.RoleRef, b.Subjects, true)
}

// ValidateUpdate also keeps the role reference.
func (roleBindingStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	b := obj.(*rbacv1.RoleBinding)
	errs := validateBinding(b.RoleRef, b.Subjects, true)
	return append(errs, validateRoleRefUpdate(b.RoleRef, old.(*rbacv1.RoleBinding).RoleRef)...)
}

// Columns are kubectl's rolebinding columns.
func (roleBindingStrategy) Columns() []metav1.TableColumnDefinition {
	return bindingColumns("roleBinding")
}

// Row prints one rolebinding.
func (roleBindingStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	b := obj.(*rbacv1.RoleBinding)
	return bindingRow(b, b.RoleRef, b.Subjects, now)
}

type clusterRoleBindingStrategy struct{ registry.Base }

// Default fills the API groups of the role reference and subjects.
func (clusterRoleBindingStrategy) Default(obj runtime.Object) {
	b := obj.(*rbacv1.ClusterRoleBinding)
	defaultBinding(&b.RoleRef, b.Subjects)
}

// ValidateCreate checks the role reference and subjects.
func (clusterRoleBindingStrategy) ValidateCreate(obj runtime.Object) field.ErrorList {
	b := obj.(*rbacv1.ClusterRoleBinding)
	return validateBinding(b.RoleRef, b.Subjects, false)
}

// ValidateUpdate also keeps the role reference.
func (clusterRoleBindingStrategy) ValidateUpdate(obj, old runtime.Object) field.ErrorList {
	b := obj.(*rbacv1.ClusterRoleBinding)
	errs := validateBinding(b.RoleRef, b.Subjects, false)
	return append(errs, validateRoleRefUpdate(b.RoleRef, old.(*rbacv1.ClusterRoleBinding).RoleRef)...)
}

// Columns are kubectl's clusterrolebinding columns.
func (clusterRoleBindingStrategy) Columns() []metav1.TableColumnDefinition {
	return bindingColumns("clusterRoleBinding")
}

// Row prints one clusterrolebinding.
func (clusterRoleBindingStrategy) Row(obj runtime.Object, now time.Time) []interface{} {
	b := obj.(*rbacv1.ClusterRoleBinding)
	return bindingRow(b, b.RoleRef, b.Subjects, now)
}
