package sim

import (
	"context"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skiff-sh/skiff/internal/agent"
)

// Annotations that set a simulated pod's usage, which the node reports to
// the metrics API: each running app container of the pod uses this much
// (e.g. "250m" of CPU, "64Mi" of memory).
const (
	AnnotationCPUUsage    = "sim.skiff.dev/cpu-usage"
	AnnotationMemoryUsage = "sim.skiff.dev/memory-usage"
)

// Usage of a running container without usage annotations.
var (
	DefaultCPUUsage    = resource.MustParse("1m")
	DefaultMemoryUsage = resource.MustParse("4Mi")
)

// usage reads one of the pod's usage annotations, or def.
func usage(p *corev1.Pod, annotation string, def resource.Quantity) resource.Quantity {
	if v, ok := p.Annotations[annotation]; ok {
		if q, err := resource.ParseQuantity(v); err == nil && q.Sign() >= 0 {
			return q
		}
	}
	return def
}

// Stats implements agent.StatsProvider: every running container of the
// given pods that this runtime runs uses what the pod's usage annotations
// say; the node uses the sum.
func (r *Runtime) Stats(_ context.Context, pods []*corev1.Pod) (*agent.NodeStats, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := &agent.NodeStats{Time: r.clock.Now(), Window: agent.DefaultMetricsInterval}
	var cpu, mem resource.Quantity
	for _, p := range pods {
		sp := r.pods[p.UID]
		if sp == nil {
			continue
		}
		c, m := usage(p, AnnotationCPUUsage, DefaultCPUUsage), usage(p, AnnotationMemoryUsage, DefaultMemoryUsage)
		ps := agent.PodStats{Namespace: p.Namespace, Name: p.Name, UID: p.UID}
		for _, ctr := range p.Spec.Containers {
			if sc := sp.containers[ctr.Name]; sc == nil || sc.State != agent.ContainerRunning {
				continue
			}
			ps.Containers = append(ps.Containers, agent.ContainerStats{Name: ctr.Name,
				Usage: corev1.ResourceList{corev1.ResourceCPU: c.DeepCopy(), corev1.ResourceMemory: m.DeepCopy()}})
			cpu.Add(c)
			mem.Add(m)
		}
		if len(ps.Containers) > 0 {
			st.Pods = append(st.Pods, ps)
		}
	}
	sort.Slice(st.Pods, func(i, j int) bool {
		a, b := st.Pods[i], st.Pods[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	st.Usage = corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem}
	return st, nil
}
