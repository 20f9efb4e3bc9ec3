package podautoscaler

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
)

// DefaultTolerance is how far usage may be from the target, as a fraction
// of it, before the HPA acts (upstream's --horizontal-pod-autoscaler-tolerance).
const DefaultTolerance = 0.1

// tolerances bound the usage ratio within which no scaling happens: up
// above 1, down below.
type tolerances struct{ up, down float64 }

func (t tolerances) within(ratio float64) bool {
	if ratio > 1 {
		return ratio-1 <= t.up
	}
	return 1-ratio <= t.down
}

// resourceTarget is one resource metric's target: a utilization of the
// pods' requests in percent, or an average value in milli-units.
type resourceTarget struct {
	resource    corev1.ResourceName
	utilization int32 // > 0: Utilization
	average     int64 // milli-units, for AverageValue
}

// proposal is what the replica calculation of one metric gives.
type proposal struct {
	replicas int32
	// utilization is the current average utilization in percent of the
	// requests (Utilization targets only).
	utilization int32
	// average is the current average usage per pod, in milli-units.
	average int64
}

// calcReplicas is upstream's replica calculation for one resource metric:
// desired = ceil(ready pods × usage / target), nothing within tolerance;
// pods being deleted or failed are ignored, pending ones (and, for CPU,
// not-ready ones) count as using nothing when that would scale up and are
// left out otherwise; pods without metrics count as using the target
// (100% of their request) when scaling down and nothing when scaling up,
// and a direction they reverse means no change.
func calcReplicas(current int32, pods []*corev1.Pod, usage map[string]int64, t resourceTarget, tol tolerances) (proposal, error) {
	if len(pods) == 0 {
		return proposal{}, fmt.Errorf("no pods returned by selector while calculating replica count")
	}
	metrics := map[string]int64{}
	var unready, missing []string
	ready := 0
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
			continue // ignored
		}
		if p.Status.Phase == corev1.PodPending {
			unready = append(unready, p.Name)
			continue
		}
		v, ok := usage[p.Name]
		if !ok {
			missing = append(missing, p.Name)
			continue
		}
		if t.resource == corev1.ResourceCPU && !podReady(p) {
			unready = append(unready, p.Name)
			continue
		}
		metrics[p.Name] = v
		ready++
	}
	if len(metrics) == 0 {
		return proposal{}, fmt.Errorf("did not receive metrics for targeted pods (pods might be unready)")
	}
	var requests map[string]int64
	if t.utilization > 0 {
		var err error
		if requests, err = podRequests(pods, t.resource); err != nil {
			return proposal{}, err
		}
	}
	ratioOf := func(m map[string]int64) (float64, int32, int64, error) {
		if t.utilization > 0 {
			return utilizationRatio(m, requests, t.utilization)
		}
		var sum int64
		for _, v := range m {
			sum += v
		}
		avg := sum / int64(len(m))
		return float64(sum) / float64(len(m)) / float64(t.average), 0, avg, nil
	}
	ratio, util, avg, err := ratioOf(metrics)
	if err != nil {
		return proposal{}, err
	}
	out := proposal{replicas: current, utilization: util, average: avg}
	scaleUpWithUnready := len(unready) > 0 && ratio > 1
	if !scaleUpWithUnready && len(missing) == 0 {
		if !tol.within(ratio) {
			out.replicas = int32(math.Ceil(ratio * float64(ready)))
		}
		return out, nil
	}
	if len(missing) > 0 {
		for _, name := range missing {
			switch {
			case ratio < 1 && t.utilization > 0:
				metrics[name] = requests[name]
			case ratio < 1:
				metrics[name] = t.average
			case ratio > 1:
				metrics[name] = 0
			}
		}
	}
	if scaleUpWithUnready {
		for _, name := range unready {
			metrics[name] = 0
		}
	}
	newRatio, _, _, err := ratioOf(metrics)
	if err != nil {
		return proposal{}, err
	}
	if tol.within(newRatio) || (ratio < 1 && newRatio > 1) || (ratio > 1 && newRatio < 1) {
		return out, nil
	}
	n := int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1 && n > current) || (newRatio > 1 && n < current) {
		return out, nil
	}
	out.replicas = n
	return out, nil
}

// utilizationRatio is the pods' usage over their requests, against the
// target in percent; pods without a request are left out.
func utilizationRatio(metrics, requests map[string]int64, target int32) (float64, int32, int64, error) {
	var usage, req int64
	n := 0
	for name, v := range metrics {
		r, ok := requests[name]
		if !ok {
			continue
		}
		usage += v
		req += r
		n++
	}
	if req == 0 || n == 0 {
		return 0, 0, 0, fmt.Errorf("no metrics returned matched known pods")
	}
	util := int32(usage * 100 / req)
	return float64(util) / float64(target), util, usage / int64(n), nil
}

// podRequests sums each pod's container requests of res, in milli-units;
// a container without one is an error, as upstream.
func podRequests(pods []*corev1.Pod, res corev1.ResourceName) (map[string]int64, error) {
	out := map[string]int64{}
	for _, p := range pods {
		var sum int64
		for _, c := range p.Spec.Containers {
			q, ok := c.Resources.Requests[res]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", res, c.Name, p.Name)
			}
			sum += q.MilliValue()
		}
		out[p.Name] = sum
	}
	return out, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
