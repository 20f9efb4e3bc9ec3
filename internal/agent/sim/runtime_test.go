package sim

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/skiff-sh/skiff/internal/agent"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func simPod(uid string, policy corev1.RestartPolicy, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + uid, Namespace: "ns", UID: types.UID(uid), Annotations: ann},
		Spec: corev1.PodSpec{RestartPolicy: policy, Containers: []corev1.Container{{Name: "c", Image: "skiff.local/busybox:latest"}}}}
}

func TestExitAfter(t *testing.T) {
	type step struct {
		after   time.Duration
		state   agent.ContainerState
		restart int32
		waiting string
		requeue time.Duration
	}
	cases := []struct {
		name   string
		policy corev1.RestartPolicy
		code   string
		steps  []step
	}{
		{"Never exits and stays", corev1.RestartPolicyNever, "0", []step{
			{0, agent.ContainerRunning, 0, "", 2 * time.Second},
			{2 * time.Second, agent.ContainerExited, 0, "", 0},
			{time.Hour, agent.ContainerExited, 0, "", 0},
		}},
		{"OnFailure with 0 stays exited", corev1.RestartPolicyOnFailure, "0", []step{
			{0, agent.ContainerRunning, 0, "", 2 * time.Second},
			{3 * time.Second, agent.ContainerExited, 0, "", 0},
		}},
		{"OnFailure with 1 restarts at once, then after back-off", corev1.RestartPolicyOnFailure, "1", []step{
			{0, agent.ContainerRunning, 0, "", 2 * time.Second},
			{2 * time.Second, agent.ContainerRunning, 1, "", 2 * time.Second},
			{2 * time.Second, agent.ContainerExited, 1, "CrashLoopBackOff", 10 * time.Second},
			{10 * time.Second, agent.ContainerRunning, 2, "", 2 * time.Second},
			{2 * time.Second, agent.ContainerExited, 2, "CrashLoopBackOff", 20 * time.Second},
		}},
		{"Always restarts", corev1.RestartPolicyAlways, "0", []step{
			{0, agent.ContainerRunning, 0, "", 2 * time.Second},
			{12 * time.Second, agent.ContainerRunning, 1, "", 2 * time.Second},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(t0)
			r := NewRuntime(netip.MustParsePrefix("10.244.3.0/24"), clk)
			p := simPod("u1", tc.policy, map[string]string{AnnotationExitAfter: "2s", AnnotationExitCode: tc.code})
			for i, s := range tc.steps {
				clk.Step(s.after)
				st, err := r.SyncPod(context.Background(), p)
				if err != nil {
					t.Fatal(err)
				}
				c := st.Containers[0]
				waiting := ""
				if c.Waiting != nil {
					waiting = c.Waiting.Reason
				}
				if c.State != s.state || c.RestartCount != s.restart || waiting != s.waiting || st.RequeueAfter != s.requeue {
					t.Errorf("step %d: state %s restarts %d waiting %q requeue %v, want %s %d %q %v",
						i, c.State, c.RestartCount, waiting, st.RequeueAfter, s.state, s.restart, s.waiting, s.requeue)
				}
				if c.State == agent.ContainerExited && tc.code == "1" && (c.ExitCode != 1 || c.Reason != "Error") {
					t.Errorf("step %d: exit %d %q", i, c.ExitCode, c.Reason)
				}
				if c.RestartCount > 0 && (c.Previous == nil || c.Previous.State != agent.ContainerExited) {
					t.Errorf("step %d: previous attempt %+v", i, c.Previous)
				}
			}
		})
	}
}

func TestIPs(t *testing.T) {
	ctx := context.Background()
	r := NewRuntime(netip.MustParsePrefix("10.244.3.0/30"), nil)
	st, err := r.SyncPod(ctx, simPod("a", corev1.RestartPolicyAlways, nil))
	if err != nil || len(st.IPs) != 1 || st.IPs[0] != "10.244.3.2" || !st.SandboxReady {
		t.Fatalf("first pod: %+v %v", st, err)
	}
	// a /30 has one usable pod address besides the gateway
	if _, err := r.SyncPod(ctx, simPod("b", corev1.RestartPolicyAlways, nil)); err == nil {
		t.Fatal("a full CIDR gave out an IP")
	}
	if _, err := r.KillPod(ctx, simPod("a", corev1.RestartPolicyAlways, nil), 0); err != nil {
		t.Fatal(err)
	}
	if err := r.ForgetPod(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if st, err := r.SyncPod(ctx, simPod("b", corev1.RestartPolicyAlways, nil)); err != nil || st.IPs[0] != "10.244.3.2" {
		t.Errorf("freed IP not reused: %+v %v", st, err)
	}
	if err := r.UpdatePodCIDR("10.9.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if st, err := r.SyncPod(ctx, simPod("c", corev1.RestartPolicyAlways, nil)); err != nil || st.IPs[0] != "10.9.0.2" {
		t.Errorf("pod CIDR update ignored: %+v %v", st, err)
	}
	refs, _ := r.ListPods(ctx)
	if len(refs) != 2 {
		t.Errorf("ListPods %v", refs)
	}
	for i, want := range map[int]string{0: "10.244.0.0/24", 1: "10.244.1.0/24", 255: "10.244.255.0/24", 256: "10.245.0.0/24", 999: "10.247.231.0/24"} {
		if got := NodeCIDR(i).String(); got != want {
			t.Errorf("NodeCIDR(%d) = %s, want %s", i, got, want)
		}
	}
	if got := NodeIP(0).String(); got != "172.16.0.1" {
		t.Errorf("NodeIP(0) = %s", got)
	}
}

func TestKillPod(t *testing.T) {
	ctx := context.Background()
	r := NewRuntime(netip.MustParsePrefix("10.244.3.0/24"), nil)
	p := simPod("a", corev1.RestartPolicyAlways, nil)
	p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "x"}}
	st, err := r.SyncPod(ctx, p)
	if err != nil || len(st.Containers) != 2 {
		t.Fatalf("%+v %v", st, err)
	}
	st, err = r.KillPod(ctx, p, 30*time.Second)
	if err != nil || st.SandboxReady {
		t.Fatalf("%+v %v", st, err)
	}
	for _, c := range st.Containers {
		if c.State != agent.ContainerExited || c.ExitCode != 0 {
			t.Errorf("after kill: %+v", c)
		}
	}
}
