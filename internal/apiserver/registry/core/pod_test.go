package core

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var testNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(-d)) }

// newPod returns a defaulted, valid pod.
func newPod() *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: ago(time.Hour)},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name:  "app",
				Image: "nginx:1.27",
				Ports: []corev1.ContainerPort{{ContainerPort: 80}},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "data", MountPath: "/data"},
				},
			}},
			Volumes: []corev1.Volume{{Name: "data"}},
		},
	}
	podStrategy{}.Default(pod)
	return pod
}

func TestPodDefault(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{
			{
				Name: "a", Image: "busybox",
				Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
				}},
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(8080)}}},
				Env:           []corev1.EnvVar{{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
			},
			{Name: "b", Image: "registry.local:5000/app:v1"},
			{Name: "c", Image: "app@sha256:abcd"},
			{Name: "d", Image: "app:latest"},
		},
		Volumes: []corev1.Volume{
			{Name: "empty"},
			{Name: "sec", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
			{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}}}},
		},
		Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
	}}
	podStrategy{}.Default(pod)
	s := pod.Spec

	checks := []struct {
		name      string
		got, want interface{}
	}{
		{"restartPolicy", s.RestartPolicy, corev1.RestartPolicyAlways},
		{"dnsPolicy", s.DNSPolicy, corev1.DNSClusterFirst},
		{"terminationGracePeriodSeconds", *s.TerminationGracePeriodSeconds, int64(30)},
		{"schedulerName", s.SchedulerName, "default-scheduler"},
		{"securityContext", *s.SecurityContext, corev1.PodSecurityContext{}},
		{"enableServiceLinks", *s.EnableServiceLinks, true},
		{"priority left to admission", s.Priority, (*int32)(nil)},
		{"preemptionPolicy left to admission", s.PreemptionPolicy, (*corev1.PreemptionPolicy)(nil)},
		{"terminationMessagePath", s.Containers[0].TerminationMessagePath, "/dev/termination-log"},
		{"terminationMessagePolicy", s.Containers[0].TerminationMessagePolicy, corev1.TerminationMessageReadFile},
		{"pull untagged", s.Containers[0].ImagePullPolicy, corev1.PullAlways},
		{"pull tagged with registry port", s.Containers[1].ImagePullPolicy, corev1.PullIfNotPresent},
		{"pull digest", s.Containers[2].ImagePullPolicy, corev1.PullIfNotPresent},
		{"pull latest", s.Containers[3].ImagePullPolicy, corev1.PullAlways},
		{"port protocol", s.Containers[0].Ports[0].Protocol, corev1.ProtocolTCP},
		{"probe timeout", s.Containers[0].LivenessProbe.TimeoutSeconds, int32(1)},
		{"probe period", s.Containers[0].LivenessProbe.PeriodSeconds, int32(10)},
		{"probe success", s.Containers[0].LivenessProbe.SuccessThreshold, int32(1)},
		{"probe failure", s.Containers[0].LivenessProbe.FailureThreshold, int32(3)},
		{"probe scheme", s.Containers[0].LivenessProbe.HTTPGet.Scheme, corev1.URISchemeHTTP},
		{"probe path", s.Containers[0].LivenessProbe.HTTPGet.Path, "/"},
		{"cpu request from limit", s.Containers[0].Resources.Requests.Cpu().String(), "500m"},
		{"memory request from limit", s.Containers[0].Resources.Requests.Memory().String(), "64Mi"},
		{"env fieldRef apiVersion", s.Containers[0].Env[0].ValueFrom.FieldRef.APIVersion, "v1"},
		{"emptyDir default", s.Volumes[0].EmptyDir != nil, true},
		{"secret defaultMode", *s.Volumes[1].Secret.DefaultMode, int32(420)},
		{"configMap defaultMode", *s.Volumes[2].ConfigMap.DefaultMode, int32(420)},
		{"tolerations untouched", s.Tolerations, []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

func TestPodHostNetworkDefaultsHostPort(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "a", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 53}}}}}}
	podStrategy{}.Default(pod)
	if got := pod.Spec.Containers[0].Ports[0].HostPort; got != 53 {
		t.Errorf("hostPort = %d, want 53", got)
	}
}

func TestPodPrepareForCreateQOS(t *testing.T) {
	res := func(cpuReq, cpuLim, memReq, memLim string) corev1.ResourceRequirements {
		r := corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}
		for name, v := range map[corev1.ResourceName][2]string{corev1.ResourceCPU: {cpuReq, cpuLim}, corev1.ResourceMemory: {memReq, memLim}} {
			if v[0] != "" {
				r.Requests[name] = resource.MustParse(v[0])
			}
			if v[1] != "" {
				r.Limits[name] = resource.MustParse(v[1])
			}
		}
		return r
	}
	cases := []struct {
		name string
		res  corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{"no resources", corev1.ResourceRequirements{}, corev1.PodQOSBestEffort},
		{"requests only", res("100m", "", "", ""), corev1.PodQOSBurstable},
		{"limits equal requests", res("1", "1", "1Gi", "1Gi"), corev1.PodQOSGuaranteed},
		{"limits only (requests defaulted)", res("", "1", "", "1Gi"), corev1.PodQOSGuaranteed},
		{"limit above request", res("500m", "1", "1Gi", "1Gi"), corev1.PodQOSBurstable},
		{"cpu limit only", res("", "1", "", ""), corev1.PodQOSBurstable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "x", Resources: c.res}}}}
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Message: "client-set"}
			podStrategy{}.Default(pod)
			podStrategy{}.PrepareForCreate(pod)
			if pod.Status.Phase != corev1.PodPending || pod.Status.PodIP != "" || pod.Status.Message != "" {
				t.Errorf("status not reset: %+v", pod.Status)
			}
			if pod.Status.QOSClass != c.want {
				t.Errorf("qosClass = %s, want %s", pod.Status.QOSClass, c.want)
			}
		})
	}
}

func TestPodSchedulingGatedCondition(t *testing.T) {
	pod := newPod()
	pod.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
	podStrategy{}.PrepareForCreate(pod)
	if len(pod.Status.Conditions) != 1 || pod.Status.Conditions[0].Reason != corev1.PodReasonSchedulingGated {
		t.Fatalf("conditions = %+v", pod.Status.Conditions)
	}
	if _, _, reason, _ := podStatusSummary(pod, testNow); reason != "SchedulingGated" {
		t.Errorf("status = %q, want SchedulingGated", reason)
	}
}

func TestPodValidateCreate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []wantErr
	}{
		{"valid", func(*corev1.Pod) {}, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil },
			[]wantErr{{field.ErrorTypeRequired, "spec.containers"}}},
		{"image required", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" },
			[]wantErr{{field.ErrorTypeRequired, "spec.containers[0].image"}}},
		{"bad container name", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "App_1" },
			[]wantErr{{field.ErrorTypeInvalid, "spec.containers[0].name"}}},
		{"duplicate container name", func(p *corev1.Pod) {
			c := p.Spec.Containers[0]
			c.Ports = nil
			p.Spec.Containers = append(p.Spec.Containers, c)
		}, []wantErr{{field.ErrorTypeDuplicate, "spec.containers[1].name"}}},
		{"init container name clashes", func(p *corev1.Pod) {
			c := p.Spec.Containers[0]
			c.Ports = nil
			p.Spec.InitContainers = []corev1.Container{c}
		}, []wantErr{{field.ErrorTypeDuplicate, "spec.initContainers[0].name"}}},
		{"port out of range", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 70000 },
			[]wantErr{{field.ErrorTypeInvalid, "spec.containers[0].ports[0].containerPort"}}},
		{"port zero", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 0 },
			[]wantErr{{field.ErrorTypeRequired, "spec.containers[0].ports[0].containerPort"}}},
		{"bad protocol", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].Protocol = "HTTP" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.containers[0].ports[0].protocol"}}},
		{"bad restartPolicy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.restartPolicy"}}},
		{"bad dnsPolicy", func(p *corev1.Pod) { p.Spec.DNSPolicy = "Google" },
			[]wantErr{{field.ErrorTypeNotSupported, "spec.dnsPolicy"}}},
		{"request above limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")},
			}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.containers[0].resources.requests"}}},
		{"negative quantity", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("-1")}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.containers[0].resources.requests[memory]"}}},
		{"unknown resource", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"gpu": resource.MustParse("1")}
		}, []wantErr{ // as upstream: not standard, and not a container resource
			{field.ErrorTypeInvalid, "spec.containers[0].resources.requests[gpu]"},
			{field.ErrorTypeInvalid, "spec.containers[0].resources.requests[gpu]"},
		}},
		{"extended resource needs limit", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{"example.com/gpu": resource.MustParse("1")}
		}, []wantErr{{field.ErrorTypeRequired, "spec.containers[0].resources.limits"}}},
		{"duplicate volume", func(p *corev1.Pod) { p.Spec.Volumes = append(p.Spec.Volumes, p.Spec.Volumes[0]) },
			[]wantErr{{field.ErrorTypeDuplicate, "spec.volumes[1].name"}}},
		{"two volume sources", func(p *corev1.Pod) {
			p.Spec.Volumes[0].HostPath = &corev1.HostPathVolumeSource{Path: "/tmp"}
		}, []wantErr{
			{field.ErrorTypeForbidden, "spec.volumes[0].hostPath"},
			// the invalid volume is not mountable
			{field.ErrorTypeNotFound, "spec.containers[0].volumeMounts[0].name"},
		}},
		{"no volume source", func(p *corev1.Pod) {
			p.Spec.Volumes[0].EmptyDir = nil
		}, []wantErr{
			{field.ErrorTypeRequired, "spec.volumes[0]"},
			{field.ErrorTypeNotFound, "spec.containers[0].volumeMounts[0].name"},
		}},
		{"secret volume needs name", func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{}}})
		}, []wantErr{{field.ErrorTypeRequired, "spec.volumes[1].secret.secretName"}}},
		{"mount of unknown volume", func(p *corev1.Pod) { p.Spec.Containers[0].VolumeMounts[0].Name = "nope" },
			[]wantErr{{field.ErrorTypeNotFound, "spec.containers[0].volumeMounts[0].name"}}},
		{"duplicate mount path", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, p.Spec.Containers[0].VolumeMounts[0])
		}, []wantErr{{field.ErrorTypeInvalid, "spec.containers[0].volumeMounts[1].mountPath"}}},
		{"bad env name", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A=B"}} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.containers[0].env[0].name"}}},
		{"env name required", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Value: "x"}} },
			[]wantErr{{field.ErrorTypeRequired, "spec.containers[0].env[0].name"}}},
		{"env fieldRef unsupported", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.hostname"}}}}
		}, []wantErr{{field.ErrorTypeNotSupported, "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"}}},
		{"probe without handler", func(p *corev1.Pod) {
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
		}, []wantErr{{field.ErrorTypeRequired, "spec.containers[0].readinessProbe"}}},
		{"liveness success threshold", func(p *corev1.Pod) {
			p.Spec.Containers[0].LivenessProbe = &corev1.Probe{
				ProbeHandler:   corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}},
				TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 2, FailureThreshold: 3,
			}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.containers[0].livenessProbe.successThreshold"}}},
		{"probe on plain init container", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x", ImagePullPolicy: corev1.PullAlways,
				TerminationMessagePolicy: corev1.TerminationMessageReadFile,
				ReadinessProbe:           &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}}
		}, []wantErr{{field.ErrorTypeForbidden, "spec.initContainers[0].readinessProbe"}}},
		{"bad nodeSelector", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"bad key!": "v"} },
			[]wantErr{{field.ErrorTypeInvalid, "spec.nodeSelector"}}},
		{"toleration bad operator", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: "Maybe"}}
		}, []wantErr{{field.ErrorTypeNotSupported, "spec.tolerations[0].operator"}}},
		{"toleration bad effect", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists, Effect: "Evict"}}
		}, []wantErr{{field.ErrorTypeNotSupported, "spec.tolerations[0].effect"}}},
		{"toleration empty key needs Exists", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpEqual}}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.tolerations[0].operator"}}},
		{"affinity bad node operator", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: "Near", Values: []string{"a"}}},
				}}},
			}}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator"}}},
		{"affinity bad label selector operator", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					TopologyKey: "kubernetes.io/hostname",
					LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "app", Operator: "Like", Values: []string{"web"}},
					}},
				}},
			}}
		}, []wantErr{{field.ErrorTypeInvalid, "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector.matchExpressions[0].operator"}}},
		{"ephemeral containers on create", func(p *corev1.Pod) {
			p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "dbg", Image: "x"}}}
		}, []wantErr{{field.ErrorTypeForbidden, "spec.ephemeralContainers"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := newPod()
			c.mutate(pod)
			checkErrs(t, podStrategy{}.ValidateCreate(pod), c.want...)
		})
	}
}

func TestPodValidateMessage(t *testing.T) {
	pod := newPod()
	pod.Spec.Containers[0].Image = ""
	got := errMessages(podStrategy{}.ValidateCreate(pod))
	if want := "spec.containers[0].image: Required value"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
}

func TestPodValidateUpdate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		want   []wantErr
	}{
		{"image change", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:1.28" }, nil},
		{"activeDeadlineSeconds set", func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptrTo(int64(60)) }, nil},
		{"toleration added", func(p *corev1.Pod) {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "new", Operator: corev1.TolerationOpExists})
		}, nil},
		{"toleration removed", func(p *corev1.Pod) { p.Spec.Tolerations = nil },
			[]wantErr{{field.ErrorTypeForbidden, "spec.tolerations"}}},
		{"env change", func(p *corev1.Pod) { p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "A", Value: "b"}} },
			[]wantErr{{field.ErrorTypeForbidden, "spec"}}},
		{"grace period change", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptrTo(int64(5)) },
			[]wantErr{{field.ErrorTypeForbidden, "spec"}}},
		{"container added", func(p *corev1.Pod) {
			c := p.Spec.Containers[0]
			c.Name, c.Ports = "side", nil
			p.Spec.Containers = append(p.Spec.Containers, c)
		}, []wantErr{{field.ErrorTypeForbidden, "spec.containers"}}},
		{"image cleared", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" },
			[]wantErr{{field.ErrorTypeRequired, "spec.containers[0].image"}, {field.ErrorTypeRequired, "spec.containers[0].image"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			old := newPod()
			old.Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
			pod := old.DeepCopy()
			c.mutate(pod)
			errs := podStrategy{}.ValidateUpdate(pod, old)
			checkErrs(t, errs, c.want...)
			for _, e := range errs {
				if e.Field == "spec" && !strings.HasPrefix(e.Error(), "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`") {
					t.Errorf("message = %q", e.Error())
				}
			}
		})
	}

	old := newPod()
	old.Spec.ActiveDeadlineSeconds = ptrTo(int64(30))
	pod := old.DeepCopy()
	pod.Spec.ActiveDeadlineSeconds = ptrTo(int64(60))
	checkErrs(t, podStrategy{}.ValidateUpdate(pod, old), wantErr{field.ErrorTypeInvalid, "spec.activeDeadlineSeconds"})
}

func TestPodValidateStatusUpdate(t *testing.T) {
	old := newPod()
	podStrategy{}.PrepareForCreate(old)
	pod := old.DeepCopy()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.5"}}
	checkErrs(t, podStrategy{}.ValidateStatusUpdate(pod, old))

	pod.Status.QOSClass = corev1.PodQOSGuaranteed
	pod.Status.PodIPs = []corev1.PodIP{{IP: "not-an-ip"}}
	checkErrs(t, podStrategy{}.ValidateStatusUpdate(pod, old),
		wantErr{field.ErrorTypeInvalid, "status.qosClass"}, wantErr{field.ErrorTypeInvalid, "status.podIPs[0]"})
}

func TestPodFields(t *testing.T) {
	pod := newPod()
	pod.Spec.NodeName = "n1"
	pod.Spec.HostNetwork = true
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.5"}}
	got := podStrategy{}.Fields(pod)
	want := map[string]string{
		"spec.nodeName": "n1", "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
		"spec.serviceAccountName": "", "spec.hostNetwork": "true", "status.phase": "Running",
		"status.podIP": "10.1.0.5", "status.nominatedNodeName": "",
	}
	if len(got) != len(want) {
		t.Errorf("fields = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if empty := (podStrategy{}).Fields(&corev1.Pod{}); empty["spec.hostNetwork"] != "false" || len(empty) != len(want) {
		t.Errorf("empty pod fields = %v", empty)
	}
}

func TestPodRow(t *testing.T) {
	running := func(name string, ready bool) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, Ready: ready, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	}
	cases := []struct {
		name                           string
		mutate                         func(*corev1.Pod)
		ready, status, restarts, ip, n string
	}{
		{"pending", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }, "0/1", "Pending", "0", "<none>", "<none>"},
		{"container creating", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Spec.NodeName = "n1"
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
		}, "0/1", "ContainerCreating", "0", "<none>", "n1"},
		{"running", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Spec.NodeName = "n1"
			p.Status.PodIPs = []corev1.PodIP{{IP: "10.1.0.5"}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
		}, "1/1", "Running", "0", "10.1.0.5", "n1"},
		{"crash loop", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{
				Name: "app", RestartCount: 4,
				State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(5 * time.Minute)}},
			}}
		}, "0/1", "CrashLoopBackOff", "4 (5m ago)", "<none>", "<none>"},
		{"init waiting", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
		}, "0/1", "Init:0/1", "0", "<none>", "<none>"},
		{"init crash loop", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", RestartCount: 2,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
		}, "0/1", "Init:CrashLoopBackOff", "2", "<none>", "<none>"},
		{"init failed exit code", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodFailed
			p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}}}
		}, "0/1", "Init:ExitCode:3", "0", "<none>", "<none>"},
		{"sidecar running", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			always := corev1.ContainerRestartPolicyAlways
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always}}
			p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "proxy", Ready: true, Started: ptrTo(true),
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodInitialized, Status: corev1.ConditionTrue}}
		}, "2/2", "Running", "0", "<none>", "<none>"},
		{"completed", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodSucceeded
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app",
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}}
		}, "0/1", "Completed", "0", "<none>", "<none>"},
		{"terminating", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			ts := ago(time.Second)
			p.DeletionTimestamp = &ts
			p.Status.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
		}, "1/1", "Terminating", "0", "<none>", "<none>"},
		{"node lost", func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodRunning
			p.Status.Reason = "NodeLost"
			ts := ago(time.Second)
			p.DeletionTimestamp = &ts
		}, "0/1", "Unknown", "0", "<none>", "<none>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := newPod()
			c.mutate(pod)
			row := podStrategy{}.Row(pod, testNow)
			if len(row) != len(podStrategy{}.Columns()) {
				t.Fatalf("row has %d cells, columns %d", len(row), len(podStrategy{}.Columns()))
			}
			want := []interface{}{"web", c.ready, c.status, c.restarts, "60m", c.ip, c.n, "<none>", "<none>"}
			for i := range want {
				if row[i] != want[i] {
					t.Errorf("cell %d (%s) = %#v, want %#v", i, podStrategy{}.Columns()[i].Name, row[i], want[i])
				}
			}
		})
	}
}

func TestPodColumns(t *testing.T) {
	var names []string
	wide := 0
	for _, c := range (podStrategy{}).Columns() {
		names = append(names, c.Name)
		if c.Priority == 1 {
			wide++
		}
	}
	if got := strings.Join(names, ","); got != "Name,Ready,Status,Restarts,Age,IP,Node,Nominated Node,Readiness Gates" {
		t.Errorf("columns = %s", got)
	}
	if wide != 4 {
		t.Errorf("wide columns = %d, want 4", wide)
	}
}

func TestPodDefaultTolerations(t *testing.T) {
	notReady := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(300))}
	unreachable := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(300))}
	own := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(5))}
	all := corev1.Toleration{Operator: corev1.TolerationOpExists}
	noSchedule := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	notReady2 := corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(2))}
	unreachable0 := corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(0))}
	tests := []struct {
		name     string
		in, want []corev1.Toleration
		opts     Options
	}{
		{"none", nil, []corev1.Toleration{notReady, unreachable}, Options{}},
		{"own unreachable kept", []corev1.Toleration{own}, []corev1.Toleration{own, notReady}, Options{}},
		{"tolerates everything", []corev1.Toleration{all}, []corev1.Toleration{all}, Options{}},
		{"a NoSchedule toleration does not count", []corev1.Toleration{noSchedule}, []corev1.Toleration{noSchedule, notReady, unreachable}, Options{}},
		{"configured seconds", nil, []corev1.Toleration{notReady2, unreachable0}, Options{NotReadyTolerationSeconds: ptrTo(int64(2)), UnreachableTolerationSeconds: ptrTo(int64(0))}},
		{"configured seconds keep the pod's own", []corev1.Toleration{own}, []corev1.Toleration{own, notReady2}, Options{NotReadyTolerationSeconds: ptrTo(int64(2)), UnreachableTolerationSeconds: ptrTo(int64(0))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := newPod()
			pod.Spec.Tolerations = tt.in
			s := newPodStrategy(tt.opts)
			s.PrepareForCreate(pod)
			if !reflect.DeepEqual(pod.Spec.Tolerations, tt.want) {
				t.Errorf("tolerations\n got %+v\nwant %+v", pod.Spec.Tolerations, tt.want)
			}
			if errs := s.ValidateCreate(pod); len(errs) > 0 {
				t.Errorf("invalid: %v", errs)
			}
		})
	}
}
