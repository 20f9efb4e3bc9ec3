package apps

import (
	"reflect"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/internal/apiserver/registry"
)

// wantErr is one expected validation error.
type wantErr struct {
	typ   field.ErrorType
	field string
}

// checkErrs fails unless errs holds exactly the wanted errors, in any order.
func checkErrs(t *testing.T, name string, errs field.ErrorList, want []wantErr) {
	t.Helper()
	var got []wantErr
	for _, e := range errs {
		got = append(got, wantErr{e.Type, e.Field})
	}
	if len(got) != len(want) {
		t.Errorf("%s: got errors %v, want %v", name, errs, want)
		return
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			t.Errorf("%s: missing %v in %v", name, w, errs)
		}
	}
}

func resource(t *testing.T, plural string) *registry.Resource {
	t.Helper()
	for _, r := range Resources() {
		if r.Plural == plural {
			return r
		}
	}
	t.Fatalf("no resource %s", plural)
	return nil
}

func TestResources(t *testing.T) {
	tests := []struct {
		plural, singular, kind string
		short, cats            []string
		status, scale          bool
	}{
		{"deployments", "deployment", "Deployment", []string{"deploy"}, []string{"all"}, true, true},
		{"replicasets", "replicaset", "ReplicaSet", []string{"rs"}, []string{"all"}, true, true},
		{"daemonsets", "daemonset", "DaemonSet", []string{"ds"}, []string{"all"}, true, false},
		{"statefulsets", "statefulset", "StatefulSet", []string{"sts"}, []string{"all"}, true, true},
		{"controllerrevisions", "controllerrevision", "ControllerRevision", nil, nil, false, false},
	}
	for _, tt := range tests {
		r := resource(t, tt.plural)
		if r.Singular != tt.singular || r.GVK != appsv1.SchemeGroupVersion.WithKind(tt.kind) || !r.Namespaced ||
			!reflect.DeepEqual(r.ShortNames, tt.short) || !reflect.DeepEqual(r.Categories, tt.cats) ||
			r.Status != tt.status || (r.Scale != nil) != tt.scale {
			t.Errorf("%s: got %+v", tt.plural, r)
		}
		if reflect.TypeOf(r.New()).Elem().Name() != tt.kind || reflect.TypeOf(r.NewList()).Elem().Name() != tt.kind+"List" {
			t.Errorf("%s: New/NewList give %T/%T", tt.plural, r.New(), r.NewList())
		}
		if n := len(r.Strategy.Columns()); n != len(r.Strategy.Row(r.New(), time.Now())) {
			t.Errorf("%s: %d columns but %d cells", tt.plural, n, len(r.Strategy.Row(r.New(), time.Now())))
		}
	}
}

func podTemplate(labels map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
		}}},
	}
}

func newDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate(map[string]string{"app": "web"}),
		},
	}
}

func TestDeploymentDefault(t *testing.T) {
	s := resource(t, "deployments").Strategy
	d := newDeployment()
	s.Default(d)
	pct := intstr.FromString("25%")
	want := appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &pct, MaxSurge: &pct}}
	if *d.Spec.Replicas != 1 || *d.Spec.RevisionHistoryLimit != 10 || *d.Spec.ProgressDeadlineSeconds != 600 ||
		!reflect.DeepEqual(d.Spec.Strategy, want) {
		t.Errorf("deployment defaults: %+v", d.Spec)
	}
	ps := d.Spec.Template.Spec
	c := ps.Containers[0]
	if ps.RestartPolicy != corev1.RestartPolicyAlways || ps.DNSPolicy != corev1.DNSClusterFirst ||
		*ps.TerminationGracePeriodSeconds != 30 || ps.SchedulerName != "default-scheduler" || ps.SecurityContext == nil ||
		c.ImagePullPolicy != corev1.PullIfNotPresent || c.TerminationMessagePath != "/dev/termination-log" ||
		c.TerminationMessagePolicy != corev1.TerminationMessageReadFile || c.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("pod template defaults: %+v", ps)
	}
	// Set values stay.
	d = newDeployment()
	d.Spec.Replicas = ptr(int32(0))
	d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
	s.Default(d)
	if *d.Spec.Replicas != 0 || d.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("defaults overwrote set values: %+v", d.Spec)
	}
	if errs := s.ValidateCreate(d); len(errs) != 0 {
		t.Errorf("valid Recreate deployment: %v", errs)
	}
}

func TestDeploymentValidate(t *testing.T) {
	s := resource(t, "deployments").Strategy
	tests := []struct {
		name   string
		modify func(*appsv1.Deployment)
		want   []wantErr
	}{
		{"valid", func(*appsv1.Deployment) {}, nil},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(-1)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.replicas"}}},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.selector"}, {field.ErrorTypeInvalid, "spec.template.metadata.labels"}}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.selector"}}},
		{"selector mismatch", func(d *appsv1.Deployment) { d.Spec.Template.Labels = map[string]string{"app": "other"} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.template.metadata.labels"}}},
		{"no containers", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.template.spec.containers"}}},
		{"no image", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Image = "" },
			[]wantErr{{field.ErrorTypeRequired, "spec.template.spec.containers[0].image"}}},
		{"bad container name", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Name = "Web_1" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.template.spec.containers[0].name"}}},
		{"bad port", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = 70000 },
			[]wantErr{{field.ErrorTypeInvalid, "spec.template.spec.containers[0].ports[0].containerPort"}}},
		{"restart never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.template.spec.restartPolicy"}}},
		{"both zero", func(d *appsv1.Deployment) {
			zero := intstr.FromInt32(0)
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &zero, MaxUnavailable: &zero}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.strategy.rollingUpdate.maxUnavailable"}}},
		{"over 100%", func(d *appsv1.Deployment) {
			v := intstr.FromString("150%")
			d.Spec.Strategy.RollingUpdate.MaxUnavailable = &v
		}, []wantErr{{field.ErrorTypeInvalid, "spec.strategy.rollingUpdate.maxUnavailable"}}},
		{"bad percent", func(d *appsv1.Deployment) {
			v := intstr.FromString("ten")
			d.Spec.Strategy.RollingUpdate.MaxSurge = &v
		}, []wantErr{{field.ErrorTypeInvalid, "spec.strategy.rollingUpdate.maxSurge"}}},
		{"bad strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "Canary" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.strategy"}}},
		{"recreate with rolling update", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType },
			[]wantErr{{field.ErrorTypeForbidden, "spec.strategy.rollingUpdate"}}},
		{"negative history", func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptr(int32(-1)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.revisionHistoryLimit"}}},
		{"deadline below minReady", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 600 },
			[]wantErr{{field.ErrorTypeInvalid, "spec.progressDeadlineSeconds"}}},
		{"active deadline", func(d *appsv1.Deployment) { d.Spec.Template.Spec.ActiveDeadlineSeconds = ptr(int64(5)) },
			[]wantErr{{field.ErrorTypeForbidden, "spec.template.spec.activeDeadlineSeconds"}}},
		{"mount of unknown volume", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}, []wantErr{{field.ErrorTypeNotFound, "spec.template.spec.containers[0].volumeMounts[0].name"}}},
	}
	for _, tt := range tests {
		d := newDeployment()
		s.Default(d)
		tt.modify(d)
		checkErrs(t, tt.name, s.ValidateCreate(d), tt.want)
	}
}

func TestDeploymentMessages(t *testing.T) {
	s := resource(t, "deployments").Strategy
	d := newDeployment()
	d.Spec.Replicas = ptr(int32(-1))
	s.Default(d)
	got := s.ValidateCreate(d).ToAggregate().Error()
	if want := "spec.replicas: Invalid value: -1: must be greater than or equal to 0"; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	d = newDeployment()
	d.Spec.Template.Labels = map[string]string{"app": "x"}
	s.Default(d)
	if got := s.ValidateCreate(d).ToAggregate().Error(); !strings.Contains(got, "`selector` does not match template `labels`") {
		t.Errorf("message %q", got)
	}
}

func TestDeploymentUpdate(t *testing.T) {
	s := resource(t, "deployments").Strategy
	old := newDeployment()
	s.Default(old)
	cur := old.DeepCopy()
	cur.Spec.Replicas = ptr(int32(5))
	cur.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
	if errs := s.ValidateUpdate(cur, old); len(errs) != 0 {
		t.Errorf("scaling and a new image: %v", errs)
	}
	cur.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": "x"}}
	cur.Spec.Template.Labels["tier"] = "x"
	errs := s.ValidateUpdate(cur, old)
	checkErrs(t, "selector change", errs, []wantErr{{field.ErrorTypeInvalid, "spec.selector"}})
	if len(errs) == 1 && errs[0].Detail != "field is immutable" {
		t.Errorf("detail %q", errs[0].Detail)
	}
}

func TestDeploymentStatus(t *testing.T) {
	s := resource(t, "deployments").Strategy
	old := newDeployment()
	old.Status = appsv1.DeploymentStatus{Replicas: 3, CollisionCount: ptr(int32(2))}
	d := old.DeepCopy()
	d.Status = appsv1.DeploymentStatus{Replicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, UpdatedReplicas: 3, CollisionCount: ptr(int32(2))}
	checkErrs(t, "valid status", s.ValidateStatusUpdate(d, old), nil)
	d.Status.ReadyReplicas = 4
	d.Status.CollisionCount = ptr(int32(1))
	checkErrs(t, "bad status", s.ValidateStatusUpdate(d, old), []wantErr{
		{field.ErrorTypeInvalid, "status.readyReplicas"}, {field.ErrorTypeInvalid, "status.collisionCount"}})

	d.Status = appsv1.DeploymentStatus{Replicas: 7}
	s.PrepareForCreate(d)
	if !reflect.DeepEqual(d.Status, appsv1.DeploymentStatus{}) {
		t.Errorf("status not cleared on create: %+v", d.Status)
	}
}

func TestScale(t *testing.T) {
	for _, tt := range []struct {
		plural string
		obj    runtime.Object
	}{
		{"deployments", &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}, Status: appsv1.DeploymentStatus{Replicas: 2}}},
		{"replicasets", &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}, Status: appsv1.ReplicaSetStatus{Replicas: 2}}},
		{"statefulsets", &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}, Status: appsv1.StatefulSetStatus{Replicas: 2}}},
	} {
		sc := resource(t, tt.plural).Scale
		spec, status, sel := sc.Get(tt.obj)
		if spec != 1 || status != 2 || sel != "app=x" {
			t.Errorf("%s: Get = %d, %d, %q; want 1, 2, app=x", tt.plural, spec, status, sel)
		}
		sc.Set(tt.obj, 4)
		if spec, _, _ := sc.Get(tt.obj); spec != 4 {
			t.Errorf("%s: after Set(4) spec.replicas = %d", tt.plural, spec)
		}
	}
	d := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}}}
	if _, _, sel := resource(t, "deployments").Scale.Get(d); sel != "tier in (a,b)" {
		t.Errorf("selector %q", sel)
	}
}

func TestRows(t *testing.T) {
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	created := metav1.NewTime(now.Add(-3 * time.Hour))
	meta := metav1.ObjectMeta{Name: "web", CreationTimestamp: created}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	tmpl := podTemplate(map[string]string{"app": "web"})
	tmpl.Spec.Containers = append(tmpl.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox"})
	tmpl.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	tests := []struct {
		plural string
		obj    runtime.Object
		want   []interface{}
	}{
		{"deployments", &appsv1.Deployment{ObjectMeta: meta,
			Spec:   appsv1.DeploymentSpec{Replicas: ptr(int32(3)), Selector: sel, Template: tmpl},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 1}},
			[]interface{}{"web", "2/3", int64(3), int64(1), "3h", "web,sidecar", "nginx:1.27,busybox", "app=web"}},
		{"replicasets", &appsv1.ReplicaSet{ObjectMeta: meta,
			Spec:   appsv1.ReplicaSetSpec{Replicas: ptr(int32(3)), Selector: sel, Template: tmpl},
			Status: appsv1.ReplicaSetStatus{Replicas: 2, ReadyReplicas: 1}},
			[]interface{}{"web", int64(3), int64(2), int64(1), "3h", "web,sidecar", "nginx:1.27,busybox", "app=web"}},
		{"daemonsets", &appsv1.DaemonSet{ObjectMeta: meta,
			Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 4, CurrentNumberScheduled: 3, NumberReady: 2,
				UpdatedNumberScheduled: 1, NumberAvailable: 2}},
			[]interface{}{"web", int64(4), int64(3), int64(2), int64(1), int64(2), "disk=ssd", "3h", "web,sidecar", "nginx:1.27,busybox", "app=web"}},
		{"daemonsets", &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Template: podTemplate(nil)}},
			[]interface{}{"web", int64(0), int64(0), int64(0), int64(0), int64(0), "<none>", "3h", "web", "nginx:1.27", "<none>"}},
		{"statefulsets", &appsv1.StatefulSet{ObjectMeta: meta,
			Spec:   appsv1.StatefulSetSpec{Replicas: ptr(int32(3)), Selector: sel, Template: tmpl},
			Status: appsv1.StatefulSetStatus{ReadyReplicas: 3}},
			[]interface{}{"web", "3/3", "3h", "web,sidecar", "nginx:1.27,busybox"}},
		{"controllerrevisions", &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f", CreationTimestamp: created,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "web", Controller: ptr(true)}}},
			Revision: 2},
			[]interface{}{"web-5d8f", "daemonset.apps/web", int64(2), "3h"}},
		{"controllerrevisions", &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f"}, Revision: 1},
			[]interface{}{"web-5d8f", "<none>", int64(1), "<unknown>"}},
	}
	for _, tt := range tests {
		s := resource(t, tt.plural).Strategy
		got := s.Row(tt.obj, now)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s row = %#v, want %#v", tt.plural, got, tt.want)
		}
	}
}

func TestColumns(t *testing.T) {
	tests := []struct {
		plural string
		names  []string
		wide   int
	}{
		{"deployments", []string{"Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"}, 3},
		{"replicasets", []string{"Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"}, 3},
		{"daemonsets", []string{"Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age", "Containers", "Images", "Selector"}, 3},
		{"statefulsets", []string{"Name", "Ready", "Age", "Containers", "Images"}, 2},
		{"controllerrevisions", []string{"Name", "Controller", "Revision", "Age"}, 0},
	}
	for _, tt := range tests {
		var names []string
		wide := 0
		for _, c := range resource(t, tt.plural).Strategy.Columns() {
			names = append(names, c.Name)
			if c.Priority == 1 {
				wide++
			}
		}
		if !reflect.DeepEqual(names, tt.names) || wide != tt.wide {
			t.Errorf("%s columns %v (%d wide), want %v (%d wide)", tt.plural, names, wide, tt.names, tt.wide)
		}
	}
}

func TestReplicaSet(t *testing.T) {
	s := resource(t, "replicasets").Strategy
	rs := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: podTemplate(map[string]string{"app": "web"}),
	}}
	s.Default(rs)
	if *rs.Spec.Replicas != 1 || rs.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("defaults: %+v", rs.Spec)
	}
	checkErrs(t, "valid rs", s.ValidateCreate(rs), nil)
	rs.Spec.Replicas = ptr(int32(-2))
	rs.Spec.MinReadySeconds = -1
	checkErrs(t, "negative rs", s.ValidateCreate(rs), []wantErr{
		{field.ErrorTypeInvalid, "spec.replicas"}, {field.ErrorTypeInvalid, "spec.minReadySeconds"}})
	rs.Status.Replicas = 3
	if f := s.Fields(rs); !reflect.DeepEqual(f, map[string]string{"status.replicas": "3"}) && f["status.replicas"] != "3" {
		t.Errorf("fields %v", f)
	}
	if f := s.Fields(&appsv1.ReplicaSet{}); len(f) != 1 || f["status.replicas"] != "0" {
		t.Errorf("fields of empty %v", f)
	}
}

func TestDaemonSet(t *testing.T) {
	s := resource(t, "daemonsets").Strategy
	newDS := func() *appsv1.DaemonSet {
		return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent"}, Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: podTemplate(map[string]string{"app": "agent"}),
		}}
	}
	ds := newDS()
	s.Default(ds)
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru.MaxUnavailable.IntValue() != 1 ||
		ru.MaxSurge.IntValue() != 0 || *ds.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("defaults: %+v", ds.Spec)
	}
	checkErrs(t, "valid ds", s.ValidateCreate(ds), nil)

	s.PrepareForCreate(ds)
	if ds.Annotations[appsv1.DeprecatedTemplateGeneration] != "1" {
		t.Errorf("template generation on create: %v", ds.Annotations)
	}
	cur := ds.DeepCopy()
	delete(cur.Annotations, appsv1.DeprecatedTemplateGeneration)
	s.PrepareForUpdate(cur, ds)
	if cur.Annotations[appsv1.DeprecatedTemplateGeneration] != "1" {
		t.Errorf("template generation after an update without template change: %v", cur.Annotations)
	}
	cur.Spec.Template.Spec.Containers[0].Image = "nginx:2"
	s.PrepareForUpdate(cur, ds)
	if cur.Annotations[appsv1.DeprecatedTemplateGeneration] != "2" {
		t.Errorf("template generation after a template change: %v", cur.Annotations)
	}

	tests := []struct {
		name   string
		modify func(*appsv1.DaemonSet)
		want   []wantErr
	}{
		{"surge and unavailable", func(d *appsv1.DaemonSet) {
			one := intstr.FromInt32(1)
			d.Spec.UpdateStrategy.RollingUpdate.MaxSurge = &one
		}, []wantErr{{field.ErrorTypeInvalid, "spec.updateStrategy.rollingUpdate.maxSurge"}}},
		{"neither", func(d *appsv1.DaemonSet) {
			zero := intstr.FromInt32(0)
			d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &zero
		}, []wantErr{{field.ErrorTypeRequired, "spec.updateStrategy.rollingUpdate.maxUnavailable"}}},
		{"bad type", func(d *appsv1.DaemonSet) { d.Spec.UpdateStrategy.Type = "Later" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.updateStrategy"}}},
		{"empty selector", func(d *appsv1.DaemonSet) { d.Spec.Selector = &metav1.LabelSelector{} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.selector"}}},
		{"restart OnFailure", func(d *appsv1.DaemonSet) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.template.spec.restartPolicy"}}},
	}
	for _, tt := range tests {
		d := newDS()
		s.Default(d)
		tt.modify(d)
		checkErrs(t, tt.name, s.ValidateCreate(d), tt.want)
	}
	old := newDS()
	s.Default(old)
	upd := old.DeepCopy()
	upd.Spec.Selector.MatchLabels["x"] = "y"
	upd.Spec.Template.Labels["x"] = "y"
	checkErrs(t, "ds selector change", s.ValidateUpdate(upd, old), []wantErr{{field.ErrorTypeInvalid, "spec.selector"}})
}

func TestStatefulSet(t *testing.T) {
	s := resource(t, "statefulsets").Strategy
	newSTS := func() *appsv1.StatefulSet {
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: appsv1.StatefulSetSpec{
			ServiceName:          "db",
			Selector:             &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Template:             podTemplate(map[string]string{"app": "db"}),
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}},
		}}
	}
	st := newSTS()
	s.Default(st)
	sp := st.Spec
	if *sp.Replicas != 1 || sp.PodManagementPolicy != appsv1.OrderedReadyPodManagement ||
		sp.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || *sp.UpdateStrategy.RollingUpdate.Partition != 0 ||
		*sp.RevisionHistoryLimit != 10 || sp.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		sp.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		*sp.VolumeClaimTemplates[0].Spec.VolumeMode != corev1.PersistentVolumeFilesystem ||
		sp.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("defaults: %+v", sp)
	}
	checkErrs(t, "valid sts", s.ValidateCreate(st), nil)

	tests := []struct {
		name   string
		modify func(*appsv1.StatefulSet)
		want   []wantErr
	}{
		{"bad policy", func(x *appsv1.StatefulSet) { x.Spec.PodManagementPolicy = "Random" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.podManagementPolicy"}}},
		{"negative partition", func(x *appsv1.StatefulSet) { x.Spec.UpdateStrategy.RollingUpdate.Partition = ptr(int32(-1)) },
			[]wantErr{{field.ErrorTypeInvalid, "spec.updateStrategy.rollingUpdate.partition"}}},
		{"on delete with rolling", func(x *appsv1.StatefulSet) { x.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType },
			[]wantErr{{field.ErrorTypeInvalid, "spec.updateStrategy.rollingUpdate"}}},
		{"bad retention", func(x *appsv1.StatefulSet) { x.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Keep" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.persistentVolumeClaimRetentionPolicy.whenScaled"}}},
		{"bad service name", func(x *appsv1.StatefulSet) { x.Spec.ServiceName = "DB" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.serviceName"}}},
		{"no selector", func(x *appsv1.StatefulSet) { x.Spec.Selector = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.selector"}, {field.ErrorTypeInvalid, "spec.template.metadata.labels"}}},
	}
	for _, tt := range tests {
		x := newSTS()
		s.Default(x)
		tt.modify(x)
		checkErrs(t, tt.name, s.ValidateCreate(x), tt.want)
	}
	old := newSTS()
	s.Default(old)
	upd := old.DeepCopy()
	upd.Spec.Replicas = ptr(int32(3))
	upd.Spec.Template.Spec.Containers[0].Image = "postgres:17"
	checkErrs(t, "allowed update", s.ValidateUpdate(upd, old), nil)
	upd.Spec.ServiceName = "other"
	checkErrs(t, "forbidden update", s.ValidateUpdate(upd, old), []wantErr{{field.ErrorTypeForbidden, "spec"}})
}

func TestControllerRevision(t *testing.T) {
	s := resource(t, "controllerrevisions").Strategy
	tests := []struct {
		name string
		raw  []byte
		rev  int64
		want []wantErr
	}{
		{"object", []byte(`{"spec":{}}`), 1, nil},
		{"no data", nil, 1, []wantErr{{field.ErrorTypeRequired, "data"}}},
		{"null", []byte(`null`), 1, []wantErr{{field.ErrorTypeRequired, "data"}}},
		{"array", []byte(`[1]`), 1, []wantErr{{field.ErrorTypeRequired, "data"}}},
		{"garbage", []byte(`{`), 1, []wantErr{{field.ErrorTypeInvalid, "data"}}},
		{"negative revision", []byte(`{}`), -1, []wantErr{{field.ErrorTypeInvalid, "revision"}}},
	}
	for _, tt := range tests {
		r := &appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: tt.raw}, Revision: tt.rev}
		checkErrs(t, tt.name, s.ValidateCreate(r), tt.want)
	}
	old := &appsv1.ControllerRevision{Data: runtime.RawExtension{Raw: []byte(`{"a":1}`)}, Revision: 1}
	cur := old.DeepCopy()
	cur.Revision = 2
	checkErrs(t, "revision bump", s.ValidateUpdate(cur, old), nil)
	cur.Data.Raw = []byte(`{"a":2}`)
	checkErrs(t, "data change", s.ValidateUpdate(cur, old), []wantErr{{field.ErrorTypeInvalid, "data"}})
}
