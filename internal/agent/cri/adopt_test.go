package cri

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestSeedProbeState(t *testing.T) {
	yes, no := true, false
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	status := func(id string, ready bool, started *bool, state corev1.ContainerState) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{Name: "other", ContainerID: "containerd://c1", Ready: true, Started: &yes, State: running},
			{Name: "app", ContainerID: id, Ready: ready, Started: started, State: state}}}}
	}
	for _, tc := range []struct {
		name                   string
		pod                    *corev1.Pod
		hasStartup             bool
		wantStarted, wantReady bool
	}{
		{"adopted ready container", status("containerd://c1", true, &yes, running), false, true, true},
		{"adopted unready container", status("containerd://c1", false, &yes, running), false, true, false},
		{"adopted, startup probe passed", status("containerd://c1", true, &yes, running), true, true, true},
		{"adopted, startup probe not passed", status("containerd://c1", false, &no, running), true, false, false},
		{"a new container of the same name", status("containerd://old", true, &yes, running), false, true, false},
		{"a new container with a startup probe", status("containerd://old", true, &yes, running), true, false, false},
		{"the status says it is not running", status("containerd://c1", true, &yes, corev1.ContainerState{}), false, true, false},
		{"no status yet", &corev1.Pod{}, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := &probeState{hasStartup: tc.hasStartup, hasReadiness: true, started: !tc.hasStartup}
			seedProbeState(ps, tc.pod, "app", "c1")
			if ps.started != tc.wantStarted || ps.ready != tc.wantReady {
				t.Errorf("started %t ready %t, want %t %t", ps.started, ps.ready, tc.wantStarted, tc.wantReady)
			}
		})
	}
}
