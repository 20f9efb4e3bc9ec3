package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/bench"
	"github.com/skiff-sh/skiff/internal/cli"
)

// asSkiff makes this test binary act as the skiff binary when the
// benchmarks start it as a child process (os.Executable).
const asSkiff = "SKIFF_BENCH_TEST_AS_SKIFF"

func TestMain(m *testing.M) {
	if os.Getenv(asSkiff) == "1" {
		os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	if err := os.Setenv(asSkiff, "1"); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// positive checks that each named figure is present and above zero.
func positive(t *testing.T, res bench.Result, names ...string) {
	t.Helper()
	for _, n := range names {
		f, ok := res.Figures[n]
		if !ok {
			t.Errorf("no figure %s in %v", n, res.Figures)
			continue
		}
		if f.Value <= 0 {
			t.Errorf("%s = %v, want > 0", n, f.Value)
		}
	}
}

// TestFailover kills the leader of two servers on an external etcd once:
// a new leader takes the Lease and its controllers act.
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.Failover(ctx, bench.FailoverConfig{Servers: 2, Rounds: 1, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "failover" {
		t.Errorf("scenario %q", res.Scenario)
	}
	positive(t, res, "failover_ms", "failover_max_ms", "lease_handover_ms", "lease_handover_max_ms")
	if got := res.Figures["rounds"].Value; got != 1 {
		t.Errorf("rounds = %v, want 1", got)
	}
}

// TestControllers runs the controllers benchmark on 3 simulated nodes
// with 2 Deployments of 3 replicas.
func TestControllers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := bench.Controllers(ctx, bench.ControllersConfig{Nodes: 3, Deployments: 2, Replicas: 3, Steady: 3 * time.Second,
		Timeout: time.Minute, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scenario != "controllers" {
		t.Errorf("scenario %q", res.Scenario)
	}
	// The server renews its Leases in the window; 3 idle simulated nodes
	// may use less than a clock tick.
	positive(t, res, "all_running_s", "cp_rss_mib", "cp_cpu_percent", "agent_rss_mib")
	if f, ok := res.Figures["agent_cpu_percent"]; !ok || f.Value < 0 {
		t.Errorf("agent_cpu_percent = %v (present %v), want ≥ 0", f.Value, ok)
	}
	if got := res.Figures["pods"].Value; got != 6 {
		t.Errorf("pods = %v, want 6", got)
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := bench.Failover(context.Background(), bench.FailoverConfig{Servers: 1}); err == nil {
		t.Error("one server accepted")
	}
	if _, err := bench.Failover(context.Background(), bench.FailoverConfig{LeaseDuration: time.Second, RenewDeadline: 2 * time.Second}); err == nil {
		t.Error("renew deadline above the lease duration accepted")
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
