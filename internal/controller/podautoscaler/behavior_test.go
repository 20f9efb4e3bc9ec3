package podautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

func ptr[T any](v T) *T { return &v }

// defaultBehavior is what the API server fills in for a behavior given
// without rules (upstream's defaults).
func defaultBehavior() *autoscalingv2.HorizontalPodAutoscalerBehavior {
	return &autoscalingv2.HorizontalPodAutoscalerBehavior{
		ScaleUp: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(0)), SelectPolicy: ptr(autoscalingv2.MaxChangePolicySelect),
			Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
				{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}},
		ScaleDown: &autoscalingv2.HPAScalingRules{SelectPolicy: ptr(autoscalingv2.MaxChangePolicySelect),
			Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}},
	}
}

func TestNormalize(t *testing.T) {
	type step struct {
		at               time.Duration
		current, desired int32
		want             int32
		reason           string // the ScalingLimited reason, or the AbleToScale one when stabilized
	}
	withBehavior := func(mod func(*autoscalingv2.HorizontalPodAutoscalerBehavior)) *autoscalingv2.HorizontalPodAutoscalerBehavior {
		b := defaultBehavior()
		mod(b)
		return b
	}
	cases := []struct {
		name     string
		behavior *autoscalingv2.HorizontalPodAutoscalerBehavior
		min, max int32
		steps    []step
	}{
		{"no behavior: up to twice the replicas, at least 4", nil, 1, 20, []step{
			{0, 1, 10, 4, "ScaleUpLimit"},
			{15 * time.Second, 4, 10, 8, "ScaleUpLimit"},
			{30 * time.Second, 8, 10, 10, "DesiredWithinRange"},
		}},
		{"no behavior: scale-down stabilization keeps the highest recent recommendation", nil, 1, 20, []step{
			{0, 10, 10, 10, "DesiredWithinRange"},
			{time.Minute, 10, 2, 10, "ScaleDownStabilized"},
			{4 * time.Minute, 10, 3, 10, "ScaleDownStabilized"},
			{5*time.Minute + time.Second, 10, 2, 3, "ScaleDownStabilized"},
			{9*time.Minute + time.Second, 3, 2, 2, "DesiredWithinRange"},
		}},
		{"default policies: 4 pods or 100% per 15s, whichever is more", defaultBehavior(), 1, 50, []step{
			{0, 2, 20, 6, "ScaleUpLimit"},
			{5 * time.Second, 6, 20, 6, "ScaleUpLimit"},
			{16 * time.Second, 6, 20, 12, "ScaleUpLimit"},
			{32 * time.Second, 12, 20, 20, "DesiredWithinRange"},
		}},
		{"maxReplicas", defaultBehavior(), 1, 5, []step{{0, 3, 20, 5, "TooManyReplicas"}}},
		{"minReplicas", defaultBehavior(), 2, 10, []step{{0, 3, 1, 2, "TooFewReplicas"}}},
		{"scale-down policy of one pod a minute", withBehavior(func(b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
			b.ScaleDown.StabilizationWindowSeconds = ptr(int32(0))
			b.ScaleDown.Policies = []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}}
		}), 1, 10, []step{
			{0, 5, 1, 4, "ScaleDownLimit"},
			{30 * time.Second, 4, 1, 4, "ScaleDownLimit"},
			{61 * time.Second, 4, 1, 3, "ScaleDownLimit"},
		}},
		{"Min select policy takes the smaller change", withBehavior(func(b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
			b.ScaleUp.SelectPolicy = ptr(autoscalingv2.MinChangePolicySelect)
		}), 1, 50, []step{{0, 10, 40, 14, "ScaleUpLimit"}}},
		{"scale-down disabled", withBehavior(func(b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
			b.ScaleDown.StabilizationWindowSeconds = ptr(int32(0))
			b.ScaleDown.SelectPolicy = ptr(autoscalingv2.DisabledPolicySelect)
		}), 1, 10, []step{{0, 5, 1, 5, "ScaleDownLimit"}}},
		{"scale-up stabilization keeps the lowest recent recommendation", withBehavior(func(b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
			b.ScaleUp.StabilizationWindowSeconds = ptr(int32(60))
		}), 1, 10, []step{
			{0, 3, 3, 3, "DesiredWithinRange"},
			{10 * time.Second, 3, 8, 3, "ScaleUpStabilized"},
			{61 * time.Second, 3, 8, 7, "ScaleUpLimit"},
		}},
		{"the HPA's scale-down window overrides the controller's", withBehavior(func(b *autoscalingv2.HorizontalPodAutoscalerBehavior) {
			b.ScaleDown.StabilizationWindowSeconds = ptr(int32(30))
		}), 1, 10, []step{
			{0, 6, 6, 6, "DesiredWithinRange"},
			{20 * time.Second, 6, 2, 6, "ScaleDownStabilized"},
			{31 * time.Second, 6, 2, 2, "DesiredWithinRange"},
		}},
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &history{}
			for i, s := range tc.steps {
				now := t0.Add(s.at)
				n := h.normalize(tc.behavior, limits{current: s.current, desired: s.desired, min: tc.min, max: tc.max}, 5*time.Minute, now)
				reason := n.limitReason
				if n.stabilized {
					reason = n.ableReason
				}
				if n.replicas != s.want || reason != s.reason {
					t.Errorf("step %d: got %d (%s), want %d (%s)", i, n.replicas, reason, s.want, s.reason)
				}
				h.record(tc.behavior, s.current, n.replicas, now)
			}
		})
	}
}
