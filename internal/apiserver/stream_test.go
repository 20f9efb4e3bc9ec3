package apiserver

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilexec "k8s.io/client-go/util/exec"
)

func TestPodLogOptions(t *testing.T) {
	for _, tc := range []struct {
		query    string
		wantCode int32 // 0: valid
		wantMsg  string
	}{
		{"container=c&follow=true&previous=true&timestamps=true&tailLines=3&limitBytes=10&sinceSeconds=5", 0, ""},
		{"sinceTime=2024-01-01T00:00:00Z", 0, ""},
		{"tailLines=-1", 422, "tailLines: Invalid value: -1: must be greater than or equal to 0"},
		{"limitBytes=0", 422, "limitBytes: Invalid value: 0: must be greater than 0"},
		{"sinceSeconds=0", 422, "sinceSeconds: Invalid value: 0: must be greater than 0"},
		{"sinceSeconds=5&sinceTime=2024-01-01T00:00:00Z", 422, "at most one of `sinceTime` or `sinceSeconds` may be specified"},
		{"tailLines=x", 400, "tailLines"},
		{"sinceTime=yesterday", 400, "sinceTime"},
	} {
		q, _ := url.ParseQuery(tc.query)
		opts, err := podLogOptions(q, "p")
		if tc.wantCode == 0 {
			if err != nil || opts == nil {
				t.Errorf("%q: %v", tc.query, err)
			}
			continue
		}
		var se apierrors.APIStatus
		if err == nil || !asStatus(err, &se) || se.Status().Code != tc.wantCode || !strings.Contains(se.Status().Message, tc.wantMsg) {
			t.Errorf("%q: %v, want %d %q", tc.query, err, tc.wantCode, tc.wantMsg)
		}
	}
}

func asStatus(err error, se *apierrors.APIStatus) bool {
	s, ok := err.(apierrors.APIStatus) //nolint:errorlint // the apierrors constructors return the status itself
	*se = s
	return ok
}

func TestStreamContainer(t *testing.T) {
	one := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	two := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "i"}}, Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}}}
	for _, tc := range []struct {
		pod       *corev1.Pod
		container string
		want      string
		wantErr   string
	}{
		{one, "", "c", ""},
		{one, "c", "c", ""},
		{one, "x", "", "container x is not valid for pod p"},
		{two, "i", "i", ""},
		{two, "", "", "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"},
	} {
		got, err := streamContainer(tc.pod, tc.container)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr || !apierrors.IsBadRequest(err) {
				t.Errorf("%q: %v, want 400 %q", tc.container, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v", tc.container, got, err)
		}
	}
}

func TestContainerLogStatus(t *testing.T) {
	pod := func(st corev1.ContainerStatus) *corev1.Pod {
		st.Name = "c"
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{st}}}
	}
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	exited := &corev1.ContainerStateTerminated{ContainerID: "containerd://1"}
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		previous bool
		wantErr  string
	}{
		{"running", pod(corev1.ContainerStatus{State: running}), false, ""},
		{"no status yet", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, false, `container "c" in pod "p" is not available`},
		{"creating", pod(corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}), false,
			`container "c" in pod "p" is waiting to start: ContainerCreating`},
		{"image pull", pod(corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}), false,
			`container "c" in pod "p" is waiting to start: image can't be pulled`},
		{"crash loop shows the last run", pod(corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: exited}}), false, ""},
		{"previous of a first run", pod(corev1.ContainerStatus{State: running}), true, `previous terminated container "c" in pod "p" not found`},
		{"previous", pod(corev1.ContainerStatus{State: running, LastTerminationState: corev1.ContainerState{Terminated: exited}}), true, ""},
		{"terminated", pod(corev1.ContainerStatus{State: corev1.ContainerState{Terminated: exited}}), false, ""},
	} {
		err := containerLogStatus(tc.pod, "c", tc.previous)
		if (err == nil) != (tc.wantErr == "") || err != nil && err.Error() != tc.wantErr {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		conn, upgrade string
		want          bool
	}{
		{"Upgrade", "SPDY/3.1", true},
		{"keep-alive, upgrade", "websocket", true},
		{"Upgrade", "", false},
		{"keep-alive", "SPDY/3.1", false},
	} {
		r := &http.Request{Header: http.Header{"Connection": {tc.conn}, "Upgrade": {tc.upgrade}}}
		if got := isUpgrade(r); got != tc.want {
			t.Errorf("%q/%q: %v", tc.conn, tc.upgrade, got)
		}
	}
}

func TestExecStatus(t *testing.T) {
	if st := execStatus(nil); st.Status != metav1.StatusSuccess {
		t.Errorf("success: %+v", st)
	}
	st := execStatus(utilexec.CodeExitError{Err: errors.New("command terminated with exit code 3"), Code: 3})
	if st.Status != metav1.StatusFailure || st.Reason != "NonZeroExitCode" || st.Details == nil || len(st.Details.Causes) != 1 ||
		st.Details.Causes[0].Type != "ExitCode" || st.Details.Causes[0].Message != "3" {
		t.Errorf("exit 3: %+v", st)
	}
	if st := execStatus(errors.New("boom")); st.Status != metav1.StatusFailure || st.Message != "boom" {
		t.Errorf("error: %+v", st)
	}
}

func TestWebSocketProtocols(t *testing.T) {
	r := &http.Request{Header: http.Header{"Sec-Websocket-Protocol": {"v5.channel.k8s.io, v4.channel.k8s.io", "SPDY/3.1+portforward.k8s.io"}}}
	if !offers(r, wsProtocolV5) || !offers(r, wsProtocolPortForward) || offers(r, "channel.k8s.io") {
		t.Errorf("protocols %v", wsProtocols(r))
	}
}
