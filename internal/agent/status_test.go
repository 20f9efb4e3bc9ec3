package agent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

func testPod(policy corev1.RestartPolicy, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"},
		Spec: corev1.PodSpec{NodeName: "n1", RestartPolicy: policy}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "img:" + c})
	}
	return p
}

func running(name string) ContainerStatus {
	return ContainerStatus{Name: name, ID: "sim://" + name, State: ContainerRunning, Image: "img:" + name, ImageID: "img@sha256:1", StartedAt: t0}
}

func exited(name string, code int32) ContainerStatus {
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	return ContainerStatus{Name: name, ID: "sim://" + name, State: ContainerExited, Image: "img:" + name, ImageID: "img@sha256:1",
		StartedAt: t0, FinishedAt: t0.Add(time.Second), ExitCode: code, Reason: reason}
}

func cond(s corev1.PodStatus, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range s.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{Type: t, Status: "missing"}
}

func TestPodStatus(t *testing.T) {
	withInit := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "img:init"}}
		return p
	}
	type want struct {
		phase                                 corev1.PodPhase
		ready, containersReady, initialized   corev1.ConditionStatus
		readyReason, readyMessage, initReason string
		sandbox                               corev1.ConditionStatus
	}
	cases := []struct {
		name     string
		pod      *corev1.Pod
		rs       *PodStatus
		terminal bool
		want     want
	}{
		{"running", testPod(corev1.RestartPolicyAlways, "a", "b"),
			&PodStatus{SandboxReady: true, IPs: []string{"10.244.0.2"}, Containers: []ContainerStatus{running("a"), running("b")}}, false,
			want{phase: corev1.PodRunning, ready: "True", containersReady: "True", initialized: "True", sandbox: "True"}},
		{"nothing yet", testPod(corev1.RestartPolicyAlways, "a"), nil, false,
			want{phase: corev1.PodPending, ready: "False", containersReady: "False", initialized: "True", sandbox: "False",
				readyReason: reasonContainersNotReady, readyMessage: "containers with unready status: [a]"}},
		{"one of two running", testPod(corev1.RestartPolicyAlways, "a", "b"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{running("a")}}, false,
			want{phase: corev1.PodPending, ready: "False", containersReady: "False", initialized: "True", sandbox: "True",
				readyReason: reasonContainersNotReady, readyMessage: "containers with unready status: [b]"}},
		{"init pending", withInit(testPod(corev1.RestartPolicyAlways, "a")), &PodStatus{SandboxReady: true}, false,
			want{phase: corev1.PodPending, ready: "False", containersReady: "False", initialized: "False", sandbox: "True",
				readyReason: reasonContainersNotReady, readyMessage: "containers with unready status: [a]", initReason: reasonNotInitialized}},
		{"init done, app running", withInit(testPod(corev1.RestartPolicyAlways, "a")),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("init", 0), running("a")}}, false,
			want{phase: corev1.PodRunning, ready: "True", containersReady: "True", initialized: "True", sandbox: "True"}},
		{"init failed, Never", withInit(testPod(corev1.RestartPolicyNever, "a")),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("init", 1)}}, false,
			want{phase: corev1.PodFailed, ready: "False", containersReady: "False", initialized: "False", sandbox: "True",
				readyReason: reasonPodFailed, initReason: reasonNotInitialized}},
		{"Never, exit 0", testPod(corev1.RestartPolicyNever, "a"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("a", 0)}}, false,
			want{phase: corev1.PodSucceeded, ready: "False", containersReady: "False", initialized: "True", sandbox: "True",
				readyReason: reasonPodCompleted, initReason: reasonPodCompleted}},
		{"Never, exit 1", testPod(corev1.RestartPolicyNever, "a"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("a", 1)}}, false,
			want{phase: corev1.PodFailed, ready: "False", containersReady: "False", initialized: "True", sandbox: "True", readyReason: reasonPodFailed}},
		{"OnFailure, exit 0", testPod(corev1.RestartPolicyOnFailure, "a"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("a", 0)}}, false,
			want{phase: corev1.PodSucceeded, ready: "False", containersReady: "False", initialized: "True", sandbox: "True",
				readyReason: reasonPodCompleted, initReason: reasonPodCompleted}},
		{"OnFailure, exit 1 restarts", testPod(corev1.RestartPolicyOnFailure, "a"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("a", 1)}}, false,
			want{phase: corev1.PodRunning, ready: "False", containersReady: "False", initialized: "True", sandbox: "True",
				readyReason: reasonContainersNotReady, readyMessage: "containers with unready status: [a]"}},
		{"Always, exit 0 restarts", testPod(corev1.RestartPolicyAlways, "a"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{exited("a", 0)}}, false,
			want{phase: corev1.PodRunning, ready: "False", containersReady: "False", initialized: "True", sandbox: "True",
				readyReason: reasonContainersNotReady, readyMessage: "containers with unready status: [a]"}},
		{"deleted, Always, exit 0", testPod(corev1.RestartPolicyAlways, "a"),
			&PodStatus{Containers: []ContainerStatus{exited("a", 0)}}, true,
			want{phase: corev1.PodSucceeded, ready: "False", containersReady: "False", initialized: "True", sandbox: "False",
				readyReason: reasonPodCompleted, initReason: reasonPodCompleted}},
		{"deleted, Always, exit 137", testPod(corev1.RestartPolicyAlways, "a"),
			&PodStatus{Containers: []ContainerStatus{exited("a", 137)}}, true,
			want{phase: corev1.PodFailed, ready: "False", containersReady: "False", initialized: "True", sandbox: "False", readyReason: reasonPodFailed}},
		{"crash loop", testPod(corev1.RestartPolicyAlways, "a"),
			&PodStatus{SandboxReady: true, Containers: []ContainerStatus{func() ContainerStatus {
				c := exited("a", 1)
				c.RestartCount = 3
				c.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
				return c
			}()}}, false,
			want{phase: corev1.PodRunning, ready: "False", containersReady: "False", initialized: "True", sandbox: "True",
				readyReason: reasonContainersNotReady, readyMessage: "containers with unready status: [a]"}},
		{"readiness gate missing", func() *corev1.Pod {
			p := testPod(corev1.RestartPolicyAlways, "a")
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
			return p
		}(), &PodStatus{SandboxReady: true, Containers: []ContainerStatus{running("a")}}, false,
			want{phase: corev1.PodRunning, ready: "False", containersReady: "True", initialized: "True", sandbox: "True",
				readyReason: reasonGatesNotReady, readyMessage: `corresponding condition of pod readiness gate "example.com/lb" does not exist.`}},
		{"terminal phase is kept", func() *corev1.Pod {
			p := testPod(corev1.RestartPolicyAlways, "a")
			p.Status.Phase = corev1.PodFailed
			return p
		}(), &PodStatus{SandboxReady: true, Containers: []ContainerStatus{running("a")}}, false,
			want{phase: corev1.PodFailed, ready: "False", containersReady: "False", initialized: "True", sandbox: "True", readyReason: reasonPodFailed}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := podStatus(tc.pod, tc.rs, []string{"192.0.2.1"}, tc.terminal, t0)
			got := want{phase: s.Phase, ready: cond(s, corev1.PodReady).Status, containersReady: cond(s, corev1.ContainersReady).Status,
				initialized: cond(s, corev1.PodInitialized).Status, readyReason: cond(s, corev1.PodReady).Reason,
				readyMessage: cond(s, corev1.PodReady).Message, initReason: cond(s, corev1.PodInitialized).Reason,
				sandbox: cond(s, corev1.PodReadyToStartContainers).Status}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if c := cond(s, corev1.PodScheduled); c.Status != corev1.ConditionTrue {
				t.Errorf("PodScheduled %+v", c)
			}
			if s.HostIP != "192.0.2.1" || len(s.HostIPs) != 1 || s.StartTime == nil || !s.StartTime.Time.Equal(t0) {
				t.Errorf("hostIP %q hostIPs %v startTime %v", s.HostIP, s.HostIPs, s.StartTime)
			}
		})
	}
}

func TestPodStatusContainers(t *testing.T) {
	p := testPod(corev1.RestartPolicyAlways, "b", "a")
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "token", MountPath: "/var/run/secrets", ReadOnly: true}}
	p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	prev := exited("b", 2)
	b := running("b")
	b.RestartCount, b.Previous = 1, &prev
	s := podStatus(p, &PodStatus{SandboxReady: true, IPs: []string{"fd00::5", "10.244.0.7"},
		Containers: []ContainerStatus{b}}, []string{"192.0.2.1"}, false, t0)
	if len(s.ContainerStatuses) != 2 || s.ContainerStatuses[0].Name != "a" || s.ContainerStatuses[1].Name != "b" {
		t.Fatalf("container statuses not sorted by name: %+v", s.ContainerStatuses)
	}
	a, got := s.ContainerStatuses[0], s.ContainerStatuses[1]
	if a.State.Waiting == nil || a.State.Waiting.Reason != reasonContainerCreating || a.Ready || a.Started == nil || *a.Started || a.Image != "img:a" {
		t.Errorf("not-yet-created container: %+v", a)
	}
	if got.State.Running == nil || !got.Ready || !*got.Started || got.RestartCount != 1 || got.ContainerID != "sim://b" ||
		got.LastTerminationState.Terminated == nil || got.LastTerminationState.Terminated.ExitCode != 2 {
		t.Errorf("restarted container: %+v", got)
	}
	if len(got.VolumeMounts) != 1 || got.VolumeMounts[0].RecursiveReadOnly == nil || *got.VolumeMounts[0].RecursiveReadOnly != corev1.RecursiveReadOnlyDisabled {
		t.Errorf("volume mounts %+v", got.VolumeMounts)
	}
	if got.Resources == nil || got.Resources.Requests.Cpu().String() != "100m" || got.AllocatedResources.Cpu().String() != "100m" {
		t.Errorf("resources %+v allocated %+v", got.Resources, got.AllocatedResources)
	}
	// the node's family first, one IP per family
	if s.PodIP != "10.244.0.7" || len(s.PodIPs) != 2 || s.PodIPs[1].IP != "fd00::5" {
		t.Errorf("pod IPs %q %v", s.PodIP, s.PodIPs)
	}
	if s.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("qos %q", s.QOSClass)
	}
}

func TestPodStatusTransitions(t *testing.T) {
	p := testPod(corev1.RestartPolicyAlways, "a")
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: "True", Reason: "EvictionByEvictionAPI"}}
	rs := &PodStatus{SandboxReady: true, Containers: []ContainerStatus{running("a")}}
	first := podStatus(p, rs, nil, false, t0)
	if first.Conditions[0].Type != corev1.DisruptionTarget {
		t.Errorf("others' conditions should come first and stay: %+v", first.Conditions)
	}
	var order []corev1.PodConditionType
	for _, c := range first.Conditions[1:] {
		order = append(order, c.Type)
		if !c.LastTransitionTime.Time.Equal(t0) {
			t.Errorf("%s transition %v, want %v", c.Type, c.LastTransitionTime, t0)
		}
	}
	for i, c := range kubeletConditions {
		if order[i] != c {
			t.Fatalf("condition order %v, want %v", order, kubeletConditions)
		}
	}
	// a minute later the container is not ready any more: only the
	// conditions that changed get a new transition time
	p.Status = first
	rs.Containers[0] = exited("a", 1)
	second := podStatus(p, rs, nil, false, t1)
	for _, c := range second.Conditions {
		want := t0
		if c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
			want = t1
		}
		if c.Type != corev1.DisruptionTarget && !c.LastTransitionTime.Time.Equal(want) {
			t.Errorf("%s transition %v, want %v", c.Type, c.LastTransitionTime, want)
		}
	}
	if !second.StartTime.Time.Equal(t0) {
		t.Errorf("start time moved: %v", second.StartTime)
	}
	if statusEqual(first, second) || !statusEqual(second, *second.DeepCopy()) {
		t.Error("statusEqual")
	}
}

func TestQOSClass(t *testing.T) {
	rl := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	cases := []struct {
		name             string
		requests, limits corev1.ResourceList
		want             corev1.PodQOSClass
	}{
		{"none", nil, nil, corev1.PodQOSBestEffort},
		{"equal", rl("1", "1Gi"), rl("1", "1Gi"), corev1.PodQOSGuaranteed},
		{"limits only", nil, rl("1", "1Gi"), corev1.PodQOSGuaranteed},
		{"requests below limits", rl("500m", "1Gi"), rl("1", "1Gi"), corev1.PodQOSBurstable},
		{"requests only", rl("1", "1Gi"), nil, corev1.PodQOSBurstable},
	}
	for _, tc := range cases {
		p := testPod(corev1.RestartPolicyAlways, "a")
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: tc.requests, Limits: tc.limits}
		if got := qosClass(p); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}
