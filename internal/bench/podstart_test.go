package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/bench"
)

// TestPodStart runs the pod startup benchmark at a tiny size on a real
// node (containerd in a network namespace the benchmark creates): 3 pods
// one at a time, then 3 at once.
func TestPodStart(t *testing.T) {
	if why := bench.PodStartMissing(); why != "" {
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := bench.PodStart(ctx, bench.PodStartConfig{Pods: 3, Timeout: time.Minute, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "podstart" {
		t.Errorf("scenario %q", res.Scenario)
	}
	positive(t, res, "p50_ms", "p99_ms", "burst_p50_ms", "burst_p99_ms", "agent_rss_mib")
	if got := res.Figures["pods"].Value; got != 3 {
		t.Errorf("pods = %v, want 3", got)
	}
}
