package sim

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestStats(t *testing.T) {
	ctx := context.Background()
	r := NewRuntime(netip.MustParsePrefix("10.244.0.0/24"), clocktesting.NewFakeClock(t0))
	busy := simPod("a", corev1.RestartPolicyAlways, map[string]string{AnnotationCPUUsage: "250m", AnnotationMemoryUsage: "64Mi"})
	busy.Spec.Containers = append(busy.Spec.Containers, corev1.Container{Name: "d", Image: "x"})
	idle := simPod("b", corev1.RestartPolicyAlways, map[string]string{AnnotationCPUUsage: "nonsense"})
	exited := simPod("c", corev1.RestartPolicyNever, map[string]string{AnnotationExitAfter: "0s"})
	notRun := simPod("d", corev1.RestartPolicyAlways, nil)
	for _, p := range []*corev1.Pod{busy, idle, exited} {
		if _, err := r.SyncPod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.Stats(ctx, []*corev1.Pod{busy, idle, exited, notRun})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pods) != 2 || st.Pods[0].Name != "p-a" || st.Pods[1].Name != "p-b" {
		t.Fatalf("want the two running pods, got %+v", st.Pods)
	}
	if len(st.Pods[0].Containers) != 2 {
		t.Fatalf("want both containers of p-a, got %+v", st.Pods[0].Containers)
	}
	for _, c := range st.Pods[0].Containers {
		if c.Usage.Cpu().MilliValue() != 250 || c.Usage.Memory().Value() != 64<<20 {
			t.Errorf("container %s: usage %v, want 250m and 64Mi", c.Name, c.Usage)
		}
	}
	if got := st.Pods[1].Containers[0].Usage.Cpu(); got.Cmp(DefaultCPUUsage) != 0 {
		t.Errorf("an unparsable annotation: cpu %v, want the default %v", got, DefaultCPUUsage)
	}
	if cpu := st.Usage.Cpu().MilliValue(); cpu != 2*250+1 {
		t.Errorf("node cpu %dm, want the pods' sum 501m", cpu)
	}
}
