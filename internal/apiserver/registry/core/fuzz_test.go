package core

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// FuzzPodStrategy decodes arbitrary JSON into a Pod and runs it through the
// strategy; nothing may panic and the row must match the columns.
func FuzzPodStrategy(f *testing.F) {
	seed := newPod()
	seed.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 2}}
	if b, err := json.Marshal(seed); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"spec":{"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"1"}}}],"initContainers":[{"name":"i","restartPolicy":"Always"}]},"status":{"initContainerStatuses":[{"name":"i","state":{"terminated":{"exitCode":1}}}]}}`))
	f.Add([]byte(`{"spec":{"volumes":[{"name":"v","secret":{},"configMap":{}}],"affinity":{"podAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":[{"labelSelector":{"matchExpressions":[{"key":"a","operator":"In"}]}}]}}}}`))
	f.Add([]byte(`{"metadata":{"deletionTimestamp":"2025-01-01T00:00:00Z"},"spec":{"readinessGates":[{"conditionType":"x"}]},"status":{"podIPs":[{"ip":"::1"}],"containerStatuses":[{"name":"a","state":{"terminated":{"signal":9}}}]}}`))
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	s := podStrategy{}
	f.Fuzz(func(t *testing.T, data []byte) {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(data, pod); err != nil {
			return
		}
		old := pod.DeepCopy()
		s.Default(pod)
		_ = s.ValidateCreate(pod)
		_ = s.ValidateUpdate(pod, old)
		_ = s.ValidateStatusUpdate(pod, old)
		_ = s.Fields(pod)
		if row := s.Row(pod, now); len(row) != len(s.Columns()) {
			t.Fatalf("row has %d cells for %d columns", len(row), len(s.Columns()))
		}
		s.PrepareForCreate(pod)
	})
}
