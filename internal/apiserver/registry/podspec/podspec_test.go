package podspec

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestDefault(t *testing.T) {
	spec := &corev1.PodSpec{
		Volumes: []corev1.Volume{{Name: "tmp"}, {Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}}},
		Containers: []corev1.Container{
			{Name: "a", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{}}},
				Resources:      corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.0001")}}},
			{Name: "b", Image: "registry.local:5000/app:v1"},
			{Name: "c", Image: "app@sha256:abcd"},
			{Name: "d", Image: "app:latest", ImagePullPolicy: corev1.PullNever},
		},
	}
	Default(spec)
	if spec.RestartPolicy != corev1.RestartPolicyAlways || spec.DNSPolicy != corev1.DNSClusterFirst || spec.SecurityContext == nil ||
		*spec.TerminationGracePeriodSeconds != 30 || spec.SchedulerName != "default-scheduler" {
		t.Errorf("spec defaults %+v", spec)
	}
	if spec.Volumes[0].EmptyDir == nil || *spec.Volumes[1].ConfigMap.DefaultMode != 0644 {
		t.Errorf("volume defaults %+v", spec.Volumes)
	}
	pulls := []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullIfNotPresent, corev1.PullNever}
	for i, c := range spec.Containers {
		if c.ImagePullPolicy != pulls[i] || c.TerminationMessagePath != corev1.TerminationMessagePathDefault ||
			c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
			t.Errorf("container %s: %+v", c.Name, c)
		}
	}
	a := spec.Containers[0]
	if a.Ports[0].Protocol != corev1.ProtocolTCP || a.ReadinessProbe.PeriodSeconds != 10 || a.ReadinessProbe.HTTPGet.Path != "/" ||
		a.ReadinessProbe.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("container a: %+v", a)
	}
	if q := a.Resources.Limits[corev1.ResourceCPU]; q.String() != "1m" {
		t.Errorf("cpu limit rounded to %s", q.String())
	}
	if a.Resources.Requests != nil {
		t.Errorf("templates must not get requests from limits: %v", a.Resources.Requests)
	}
	// Idempotent.
	again := spec.DeepCopy()
	Default(again)
	if !reflect.DeepEqual(again, spec) {
		t.Error("Default is not idempotent")
	}
}

func TestValidate(t *testing.T) {
	valid := func() *corev1.PodSpec {
		s := &corev1.PodSpec{
			Volumes:    []corev1.Volume{{Name: "data"}},
			Containers: []corev1.Container{{Name: "web", Image: "nginx", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}, VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		}
		Default(s)
		return s
	}
	tests := []struct {
		name   string
		modify func(*corev1.PodSpec)
		typ    field.ErrorType
		field  string
	}{
		{"valid", func(*corev1.PodSpec) {}, "", ""},
		{"no containers", func(s *corev1.PodSpec) { s.Containers = nil }, field.ErrorTypeRequired, "spec.containers"},
		{"no name", func(s *corev1.PodSpec) { s.Containers[0].Name = "" }, field.ErrorTypeRequired, "spec.containers[0].name"},
		{"duplicate name", func(s *corev1.PodSpec) {
			s.InitContainers = []corev1.Container{{Name: "web", Image: "x", ImagePullPolicy: corev1.PullAlways, TerminationMessagePolicy: corev1.TerminationMessageReadFile}}
		}, field.ErrorTypeDuplicate, "spec.containers[0].name"},
		{"no image", func(s *corev1.PodSpec) { s.Containers[0].Image = "" }, field.ErrorTypeRequired, "spec.containers[0].image"},
		{"port zero", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].ContainerPort = 0 }, field.ErrorTypeRequired, "spec.containers[0].ports[0].containerPort"},
		{"bad protocol", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].Protocol = "ICMP" }, field.ErrorTypeNotSupported, "spec.containers[0].ports[0].protocol"},
		{"long port name", func(s *corev1.PodSpec) { s.Containers[0].Ports[0].Name = "much-too-long-name" }, field.ErrorTypeInvalid, "spec.containers[0].ports[0].name"},
		{"bad restart", func(s *corev1.PodSpec) { s.RestartPolicy = "Sometimes" }, field.ErrorTypeNotSupported, "spec.restartPolicy"},
		{"bad dns", func(s *corev1.PodSpec) { s.DNSPolicy = "Google" }, field.ErrorTypeNotSupported, "spec.dnsPolicy"},
		{"bad pull", func(s *corev1.PodSpec) { s.Containers[0].ImagePullPolicy = "Sometimes" }, field.ErrorTypeNotSupported, "spec.containers[0].imagePullPolicy"},
		{"unknown volume", func(s *corev1.PodSpec) { s.Volumes = nil }, field.ErrorTypeNotFound, "spec.containers[0].volumeMounts[0].name"},
		{"duplicate volume", func(s *corev1.PodSpec) { s.Volumes = append(s.Volumes, corev1.Volume{Name: "data"}) }, field.ErrorTypeDuplicate, "spec.volumes[1].name"},
	}
	for _, tt := range tests {
		s := valid()
		tt.modify(s)
		errs := Validate(s, field.NewPath("spec"))
		switch {
		case tt.field == "" && len(errs) != 0:
			t.Errorf("%s: %v", tt.name, errs)
		case tt.field != "" && (len(errs) != 1 || errs[0].Type != tt.typ || errs[0].Field != tt.field):
			t.Errorf("%s: %v, want %s at %s", tt.name, errs, tt.typ, tt.field)
		}
	}
	tmpl := &corev1.PodTemplateSpec{Spec: *valid()}
	tmpl.Labels = map[string]string{"bad key!": "x"}
	tmpl.Spec.EphemeralContainers = []corev1.EphemeralContainer{{}}
	errs := ValidateTemplate(tmpl, field.NewPath("spec", "template"))
	if len(errs) != 2 || errs[0].Field != "spec.template.labels" || errs[1].Field != "spec.template.spec.ephemeralContainers" {
		t.Errorf("template errors %v", errs)
	}
}

func TestContainerCells(t *testing.T) {
	names, images := ContainerCells(&corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "x"}, {Name: "b", Image: "y:1"}}})
	if names != "a,b" || images != "x,y:1" {
		t.Errorf("%q %q", names, images)
	}
	if n, i := ContainerCells(&corev1.PodSpec{}); n != "" || i != "" {
		t.Errorf("empty: %q %q", n, i)
	}
}
