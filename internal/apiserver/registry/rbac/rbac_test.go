package rbac

import (
	"reflect"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

func res(t *testing.T, plural string) *registry.Resource {
	for _, r := range Resources() {
		if r.Plural == plural {
			return r
		}
	}
	t.Fatalf("no %s", plural)
	return nil
}

func fieldsOf(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func TestResources(t *testing.T) {
	for _, tt := range []struct {
		plural, singular string
		namespaced       bool
	}{
		{"roles", "role", true}, {"rolebindings", "rolebinding", true},
		{"clusterroles", "clusterrole", false}, {"clusterrolebindings", "clusterrolebinding", false},
	} {
		r := res(t, tt.plural)
		if r.Singular != tt.singular || r.Namespaced != tt.namespaced || len(r.ShortNames) != 0 || r.GVK.Group != "rbac.authorization.k8s.io" {
			t.Errorf("%s: %+v", tt.plural, r)
		}
		if len(r.Strategy.Columns()) != len(r.Strategy.Row(r.New(), time.Now())) {
			t.Errorf("%s: columns and cells differ", tt.plural)
		}
	}
}

func TestRoles(t *testing.T) {
	rs := res(t, "roles").Strategy
	crs := res(t, "clusterroles").Strategy
	tests := []struct {
		name       string
		rules      []rbacv1.PolicyRule
		role, crol []string
	}{
		{"valid", []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}, nil, nil},
		{"no verbs", []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}}}, []string{"rules[0].verbs"}, []string{"rules[0].verbs"}},
		{"no groups or resources", []rbacv1.PolicyRule{{Verbs: []string{"get"}}},
			[]string{"rules[0].apiGroups", "rules[0].resources"}, []string{"rules[0].apiGroups", "rules[0].resources"}},
		{"non-resource url", []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}}, []string{"rules[0].nonResourceURLs"}, nil},
		{"mixed", []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/x"}, Resources: []string{"pods"}}},
			[]string{"rules[0].nonResourceURLs", "rules[0].nonResourceURLs"}, []string{"rules[0].nonResourceURLs"}},
	}
	for _, tt := range tests {
		if got := fieldsOf(rs.ValidateCreate(&rbacv1.Role{Rules: tt.rules})); !reflect.DeepEqual(got, tt.role) {
			t.Errorf("role %s: %v, want %v", tt.name, got, tt.role)
		}
		if got := fieldsOf(crs.ValidateCreate(&rbacv1.ClusterRole{Rules: tt.rules})); !reflect.DeepEqual(got, tt.crol) {
			t.Errorf("clusterrole %s: %v, want %v", tt.name, got, tt.crol)
		}
	}
	agg := &rbacv1.ClusterRole{AggregationRule: &rbacv1.AggregationRule{}}
	if got := fieldsOf(crs.ValidateCreate(agg)); !reflect.DeepEqual(got, []string{"aggregationRule.clusterRoleSelectors"}) {
		t.Errorf("empty aggregation: %v", got)
	}
	created := metav1.NewTime(time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	var role runtime.Object = &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "reader", CreationTimestamp: created}}
	if got := rs.Row(role, time.Now()); !reflect.DeepEqual(got, []interface{}{"reader", "2024-03-01T12:00:00Z"}) {
		t.Errorf("row %#v", got)
	}
	if c := rs.Columns(); c[1].Name != "Created At" || c[1].Type != "date" {
		t.Errorf("columns %+v", c)
	}
}

func TestBindings(t *testing.T) {
	rb := res(t, "rolebindings").Strategy
	crb := res(t, "clusterrolebindings").Strategy
	b := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "read"},
		RoleRef:    rbacv1.RoleRef{Kind: "Role", Name: "reader"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}, {Kind: "Group", Name: "devs"},
			{Kind: "ServiceAccount", Name: "ci", Namespace: "build"}, {Kind: "ServiceAccount", Name: "bot"}},
	}
	rb.Default(b)
	if b.RoleRef.APIGroup != rbacv1.GroupName || b.Subjects[0].APIGroup != rbacv1.GroupName || b.Subjects[2].APIGroup != "" {
		t.Errorf("defaults %+v", b)
	}
	if errs := rb.ValidateCreate(b); len(errs) != 0 {
		t.Errorf("valid binding: %v", errs)
	}
	bad := b.DeepCopy()
	bad.RoleRef.Kind = "Admin"
	bad.Subjects = append(bad.Subjects, rbacv1.Subject{Kind: "Robot", Name: "r"})
	if got := fieldsOf(rb.ValidateCreate(bad)); !reflect.DeepEqual(got, []string{"roleRef.kind", "subjects[4].kind"}) {
		t.Errorf("invalid binding: %v", got)
	}
	cur := b.DeepCopy()
	cur.RoleRef.Name = "writer"
	errs := rb.ValidateUpdate(cur, b)
	if len(errs) != 1 || errs[0].Field != "roleRef" || errs[0].Detail != "cannot change roleRef" {
		t.Errorf("roleRef change: %v", errs)
	}
	cur = b.DeepCopy()
	cur.Subjects = cur.Subjects[:1]
	if errs := rb.ValidateUpdate(cur, b); len(errs) != 0 {
		t.Errorf("subject change: %v", errs)
	}

	cb := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "bot"}}}
	crb.Default(cb)
	if got := fieldsOf(crb.ValidateCreate(cb)); !reflect.DeepEqual(got, []string{"roleRef.kind", "subjects[0].namespace"}) {
		t.Errorf("cluster binding: %v", got)
	}

	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	b.CreationTimestamp = metav1.NewTime(now.Add(-time.Minute))
	want := []interface{}{"read", "Role/reader", "60s", "alice", "devs", "build/ci, /bot"}
	if got := rb.Row(b, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	var names []string
	wide := 0
	for _, c := range crb.Columns() {
		names = append(names, c.Name)
		wide += int(c.Priority)
	}
	if !reflect.DeepEqual(names, []string{"Name", "Role", "Age", "Users", "Groups", "ServiceAccounts"}) || wide != 3 {
		t.Errorf("columns %v", names)
	}
}
