package podstate

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestNextAvailable(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	readySince := func(ago time.Duration) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-ago))}}}}
	}
	notReady := &corev1.Pod{}
	for _, tc := range []struct {
		name     string
		pods     []*corev1.Pod
		minReady int32
		want     time.Duration
	}{
		{"no minReadySeconds", []*corev1.Pod{readySince(0)}, 0, 0},
		{"none ready", []*corev1.Pod{notReady}, 10, 0},
		{"already available", []*corev1.Pod{readySince(time.Minute)}, 10, 0},
		{"the soonest", []*corev1.Pod{readySince(2 * time.Second), readySince(5 * time.Second), notReady}, 10, 5*time.Second + 10*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NextAvailable(tc.pods, tc.minReady, now); got != tc.want {
				t.Errorf("NextAvailable = %v, want %v", got, tc.want)
			}
		})
	}
}
