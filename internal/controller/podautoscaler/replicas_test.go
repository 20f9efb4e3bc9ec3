package podautoscaler

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testPod is a running, ready pod with one container requesting 1 CPU
// and 1Gi of memory; mod changes it.
func testPod(i int, mod ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "ns"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	for _, m := range mod {
		m(p)
	}
	return p
}

func unready(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse }
func pending(p *corev1.Pod) { p.Status.Phase = corev1.PodPending }
func failed(p *corev1.Pod)  { p.Status.Phase = corev1.PodFailed }
func deleting(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
}
func noRequest(p *corev1.Pod) { p.Spec.Containers[0].Resources.Requests = nil }

func TestCalcReplicas(t *testing.T) {
	cpu30 := resourceTarget{resource: corev1.ResourceCPU, utilization: 30}
	cpu50 := resourceTarget{resource: corev1.ResourceCPU, utilization: 50}
	cpu100 := resourceTarget{resource: corev1.ResourceCPU, utilization: 100}
	tol := tolerances{up: DefaultTolerance, down: DefaultTolerance}
	cases := []struct {
		name    string
		current int32
		pods    []*corev1.Pod
		usage   []int64 // milli; -1: no metrics for that pod
		target  resourceTarget
		want    int32
		util    int32
		wantErr bool
	}{
		{name: "scale up", current: 3, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2)},
			usage: []int64{300, 500, 700}, target: cpu30, want: 5, util: 50},
		{name: "unready pods count as idle when scaling up", current: 3, pods: []*corev1.Pod{testPod(0, unready), testPod(1), testPod(2)},
			usage: []int64{300, 500, 700}, target: cpu30, want: 4, util: 60},
		{name: "pending pods count as idle when scaling up", current: 3, pods: []*corev1.Pod{testPod(0, pending), testPod(1), testPod(2)},
			usage: []int64{-1, 500, 700}, target: cpu30, want: 4, util: 60},
		{name: "pods without metrics count as idle when scaling up", current: 4, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2), testPod(3)},
			usage: []int64{300, 500, 700, -1}, target: cpu30, want: 5, util: 50},
		{name: "scale down", current: 5, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2), testPod(3), testPod(4)},
			usage: []int64{100, 300, 500, 250, 250}, target: cpu50, want: 3, util: 28},
		{name: "pods without metrics count at their request when scaling down", current: 4, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2), testPod(3)},
			usage: []int64{100, 100, 100, -1}, target: cpu50, want: 3, util: 10},
		{name: "unready pods are left out when scaling down", current: 4, pods: []*corev1.Pod{testPod(0, unready), testPod(1), testPod(2), testPod(3)},
			usage: []int64{900, 100, 100, 100}, target: cpu50, want: 1, util: 10},
		{name: "failed and deleted pods are ignored", current: 3, pods: []*corev1.Pod{testPod(0, failed), testPod(1, deleting), testPod(2)},
			usage: []int64{1000, 1000, 300}, target: cpu30, want: 3, util: 30},
		{name: "within tolerance", current: 3, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2)},
			usage: []int64{1080, 1080, 1080}, target: cpu100, want: 3, util: 108},
		{name: "just outside tolerance", current: 3, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2)},
			usage: []int64{1110, 1110, 1110}, target: cpu100, want: 4, util: 111},
		{name: "missing pods reversing the direction keep the count", current: 4, pods: []*corev1.Pod{testPod(0), testPod(1), testPod(2), testPod(3)},
			usage: []int64{350, 350, 350, -1}, target: cpu30, want: 4, util: 35},
		{name: "average value", current: 2, pods: []*corev1.Pod{testPod(0), testPod(1)},
			usage: []int64{400, 400}, target: resourceTarget{resource: corev1.ResourceCPU, average: 200}, want: 4},
		{name: "memory counts unready pods", current: 2, pods: []*corev1.Pod{testPod(0, unready), testPod(1)},
			usage: []int64{1000 << 20 * 1000, 1000 << 20 * 1000}, target: resourceTarget{resource: corev1.ResourceMemory, average: 500 << 20 * 1000}, want: 4},
		{name: "a container without a request", current: 2, pods: []*corev1.Pod{testPod(0, noRequest), testPod(1)},
			usage: []int64{400, 400}, target: cpu50, wantErr: true},
		{name: "no metrics", current: 2, pods: []*corev1.Pod{testPod(0), testPod(1)},
			usage: []int64{-1, -1}, target: cpu50, wantErr: true},
		{name: "no pods", current: 2, target: cpu50, wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			usage := map[string]int64{}
			for i, u := range tc.usage {
				if u >= 0 {
					usage[tc.pods[i].Name] = u
				}
			}
			p, err := calcReplicas(tc.current, tc.pods, usage, tc.target, tol)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.replicas != tc.want || p.utilization != tc.util {
				t.Errorf("got %d replicas at %d%%, want %d at %d%%", p.replicas, p.utilization, tc.want, tc.util)
			}
		})
	}
}

func TestTolerances(t *testing.T) {
	tol := tolerances{up: 0.5, down: 0.1}
	for _, tc := range []struct {
		ratio float64
		want  bool
	}{{1.4, true}, {1.6, false}, {0.95, true}, {0.85, false}} {
		if got := tol.within(tc.ratio); got != tc.want {
			t.Errorf("within(%v) = %v, want %v", tc.ratio, got, tc.want)
		}
	}
}
