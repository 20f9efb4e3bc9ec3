package bench

import (
	"context"
	"testing"
)

// TestSchedulerWorkloads runs every scheduler workload at a small size
// against a real control plane: each must bind all its pods as the
// workload demands (the run's own check) and report its figures.
func TestSchedulerWorkloads(t *testing.T) {
	for _, w := range Workloads {
		t.Run(w, func(t *testing.T) {
			res, err := Scheduler(context.Background(), SchedulerConfig{Nodes: 6, Pods: 12, Workload: w, Clients: 4})
			if err != nil {
				t.Fatal(err)
			}
			if res.Scenario != "scheduler-"+w {
				t.Errorf("scenario %q", res.Scenario)
			}
			for _, f := range []string{"pods_per_s", "p50_ms", "p99_ms"} {
				if v := res.Figures[f].Value; v <= 0 {
					t.Errorf("%s = %v, want > 0", f, v)
				}
			}
			if _, ok := res.Figures["scheduler_rss_mib"]; !ok {
				t.Error("no scheduler_rss_mib figure")
			}
			if got := res.Figures["pods"].Value; got != 12 {
				t.Errorf("pods = %v, want 12", got)
			}
			if w == WorkloadPreemption {
				if got := res.Figures["victims_deleted"].Value; got < 12 {
					t.Errorf("victims_deleted = %v, want at least 12 (one per high-priority pod)", got)
				}
			}
		})
	}
}

func TestSchedulerRejectsBadConfig(t *testing.T) {
	if _, err := Scheduler(context.Background(), SchedulerConfig{Workload: "nope"}); err == nil {
		t.Error("unknown workload accepted")
	}
	if _, err := Scheduler(context.Background(), SchedulerConfig{Workload: WorkloadPreemption, Nodes: 2, Pods: 9}); err == nil {
		t.Error("preemption with more pods than victims accepted")
	}
}
