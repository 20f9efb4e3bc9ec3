package podautoscaler

import (
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// recommendation is one sync's proposed replica count.
type recommendation struct {
	replicas int32
	at       time.Time
}

// scaleEvent is one rescale of the target: change > 0 up, < 0 down.
type scaleEvent struct {
	change int32
	at     time.Time
}

// history is what the controller remembers of one HPA between syncs, as
// upstream does (in memory: a new leader starts afresh).
type history struct {
	recs     []recommendation
	up, down []scaleEvent
}

// limits is one normalization's input.
type limits struct {
	current, desired, min, max int32
}

// normalized is the replica count to scale to, with the AbleToScale and
// ScalingLimited reasons that explain it.
type normalized struct {
	replicas                  int32
	stabilized                bool
	ableReason, ableMessage   string
	limited                   bool
	limitReason, limitMessage string
}

// normalize applies stabilization and the scaling rules of the HPA's
// behavior (nil: upstream's rules for an HPA without one: scale-down
// stabilization over downWindow, scale-up to at most max(2×current, 4))
// and records the recommendation.
func (h *history) normalize(b *autoscalingv2.HorizontalPodAutoscalerBehavior, l limits, downWindow time.Duration, now time.Time) normalized {
	var out normalized
	var stabilized int32
	if b == nil {
		stabilized = h.stabilize(l, 0, downWindow, now)
	} else {
		up, down := rulesWindow(b.ScaleUp, 0), rulesWindow(b.ScaleDown, downWindow)
		stabilized = h.stabilize(l, up, down, now)
	}
	if stabilized != l.desired {
		out.stabilized = true
		if l.desired >= l.current {
			out.ableReason, out.ableMessage = "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
		} else {
			out.ableReason, out.ableMessage = "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
		}
	} else {
		out.ableReason, out.ableMessage = "ReadyForNewScale", "recommended size matches current size"
	}
	l.desired = stabilized
	if b == nil {
		out.replicas, out.limitReason, out.limitMessage = limitWithoutBehavior(l)
	} else {
		out.replicas, out.limitReason, out.limitMessage = h.limitWithBehavior(b, l, now)
	}
	out.limited = out.replicas != stabilized
	return out
}

// rulesWindow is the stabilization window of rules, def when unset.
func rulesWindow(r *autoscalingv2.HPAScalingRules, def time.Duration) time.Duration {
	if r == nil || r.StabilizationWindowSeconds == nil {
		return def
	}
	return time.Duration(*r.StabilizationWindowSeconds) * time.Second
}

// stabilize bounds the desired count by the recommendations of the
// windows (scaling up to no more than the lowest within upWindow, down to
// no less than the highest within downWindow), then records desired.
func (h *history) stabilize(l limits, upWindow, downWindow time.Duration, now time.Time) int32 {
	upRec, downRec := l.desired, l.desired
	upCut, downCut := now.Add(-upWindow), now.Add(-downWindow)
	kept := h.recs[:0]
	for _, r := range h.recs {
		if r.at.After(upCut) {
			upRec = min(upRec, r.replicas)
		}
		if r.at.After(downCut) {
			downRec = max(downRec, r.replicas)
		}
		if r.at.After(upCut) || r.at.After(downCut) {
			kept = append(kept, r)
		}
	}
	h.recs = append(kept, recommendation{replicas: l.desired, at: now})
	rec := l.current
	rec = max(rec, upRec)
	rec = min(rec, downRec)
	return rec
}

// limitWithoutBehavior is upstream's rule for an HPA without behavior.
func limitWithoutBehavior(l limits) (int32, string, string) {
	upLimit := max(2*l.current, 4)
	maxAllowed, reason, msg := l.max, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
	if upLimit < maxAllowed {
		maxAllowed, reason, msg = upLimit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
	}
	switch {
	case l.desired < l.min:
		return l.min, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
	case l.desired > maxAllowed:
		return maxAllowed, reason, msg
	}
	return l.desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}

// limitWithBehavior bounds a change by minReplicas, maxReplicas and the
// rate the behavior's policies allow over their periods.
func (h *history) limitWithBehavior(b *autoscalingv2.HorizontalPodAutoscalerBehavior, l limits, now time.Time) (int32, string, string) {
	switch {
	case l.desired > l.current:
		upLimit := max(h.rateLimit(l.current, b.ScaleUp, true, now), l.current)
		if l.max > upLimit {
			if l.desired > upLimit {
				return upLimit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
			}
		} else if l.desired > l.max {
			return l.max, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		}
	case l.desired < l.current:
		downLimit := min(h.rateLimit(l.current, b.ScaleDown, false, now), l.current)
		if l.min < downLimit {
			if l.desired < downLimit {
				return downLimit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
			}
		} else if l.desired < l.min {
			return l.min, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		}
	}
	return l.desired, "DesiredWithinRange", "the desired count is within the acceptable range"
}

// changeSince sums the changes of events within the last period.
func changeSince(events []scaleEvent, period time.Duration, now time.Time) int32 {
	var sum int32
	cut := now.Add(-period)
	for _, e := range events {
		if e.at.After(cut) {
			sum += e.change
		}
	}
	return sum
}

// selectPolicy returns the rules' select policy (default Max).
func selectPolicy(r *autoscalingv2.HPAScalingRules) autoscalingv2.ScalingPolicySelect {
	if r == nil || r.SelectPolicy == nil {
		return autoscalingv2.MaxChangePolicySelect
	}
	return *r.SelectPolicy
}

// rateLimit is the most replicas (up) or the fewest (down) the rules'
// policies allow now: each policy's allowance counted from the replicas
// at the start of its period; Max picks the policy allowing the largest
// change, Min the smallest, Disabled allows none.
func (h *history) rateLimit(current int32, r *autoscalingv2.HPAScalingRules, up bool, now time.Time) int32 {
	sel := selectPolicy(r)
	if sel == autoscalingv2.DisabledPolicySelect || r == nil || len(r.Policies) == 0 {
		return current
	}
	highest := up == (sel != autoscalingv2.MinChangePolicySelect)
	var result int32
	for i, p := range r.Policies {
		period := time.Duration(p.PeriodSeconds) * time.Second
		start := current - changeSince(h.up, period, now) - changeSince(h.down, period, now)
		var proposed int32
		switch {
		case p.Type == autoscalingv2.PodsScalingPolicy && up:
			proposed = start + p.Value
		case p.Type == autoscalingv2.PodsScalingPolicy:
			proposed = start - p.Value
		case p.Type == autoscalingv2.PercentScalingPolicy && up:
			// rounded up, or a small target would never grow
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		case p.Type == autoscalingv2.PercentScalingPolicy:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		if i == 0 || highest && proposed > result || !highest && proposed < result {
			result = proposed
		}
	}
	return result
}

// record remembers a rescale from prev to next, dropping events older than
// the longest policy period of their direction.
func (h *history) record(b *autoscalingv2.HorizontalPodAutoscalerBehavior, prev, next int32, now time.Time) {
	if b == nil || prev == next {
		return
	}
	prune := func(events []scaleEvent, r *autoscalingv2.HPAScalingRules) []scaleEvent {
		var longest int32
		if r != nil {
			for _, p := range r.Policies {
				longest = max(longest, p.PeriodSeconds)
			}
		}
		cut := now.Add(-time.Duration(longest) * time.Second)
		kept := events[:0]
		for _, e := range events {
			if e.at.After(cut) {
				kept = append(kept, e)
			}
		}
		return kept
	}
	e := scaleEvent{change: next - prev, at: now}
	if next > prev {
		h.up = append(prune(h.up, b.ScaleUp), e)
	} else {
		h.down = append(prune(h.down, b.ScaleDown), e)
	}
}
