package plugins

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/scheduler/framework"
)

// benchCluster builds n nodes in 10 zones, each holding two pods, like the
// SchedulingBasic setup of upstream's scheduler_perf.
func benchCluster(b *testing.B, n int) *framework.Snapshot {
	var nodes []*v1.Node
	var pods []*v1.Pod
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("node-%05d", i)
		nodes = append(nodes, mkNode(name, nodeLabels(zone, fmt.Sprintf("zone-%d", i%10)), nodeAlloc(v1.ResourceCPU, "32"), nodeAlloc(v1.ResourceMemory, "64Gi")))
		for j := 0; j < 2; j++ {
			pods = append(pods, mkPod(fmt.Sprintf("init-%d-%d", i, j), podOnNode(name), podLabels("app", "init"), podRequests("cpu", "100m", "memory", "500Mi")))
		}
	}
	return framework.NewSnapshot(cluster(b, nodes, pods...))
}

func BenchmarkSchedule(b *testing.B) {
	workloads := []struct {
		name string
		pod  *v1.Pod
	}{
		{"basic", mkPod("p", podRequests("cpu", "100m", "memory", "500Mi"))},
		{"spread", mkPod("p", podLabels("app", "web"), podRequests("cpu", "100m"),
			podSpread(spread(zone, 1, v1.DoNotSchedule), spread(v1.LabelHostname, 1, v1.ScheduleAnyway)))},
		{"antiaffinity", mkPod("p", podLabels("app", "init"), podRequests("cpu", "100m"),
			antiAffinity(term(v1.LabelHostname, selector("app", "other"))))},
	}
	for _, n := range []int{1000, 5000} {
		snap := benchCluster(b, n)
		for _, w := range workloads {
			b.Run(fmt.Sprintf("%s/nodes=%d", w.name, n), func(b *testing.B) {
				f := newFramework(b, ProfileConfig{})
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := f.Schedule(ctx, snap, w.pod); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
