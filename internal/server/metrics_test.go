package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReplacingRegisterer: a restarted component registers its metrics
// again on the same registry.
func TestReplacingRegisterer(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := replacingRegisterer{reg}
	for i := range 3 {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "restarted_total", Help: "h"})
		if err := r.Register(c); err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
		c.Add(float64(i + 1))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 3 {
		t.Errorf("gathered %v, want the last counter (3) only", mfs)
	}
	other := prometheus.NewGauge(prometheus.GaugeOpts{Name: "restarted_total", Help: "other help"})
	if err := r.Register(other); err == nil {
		t.Error("a different metric under the same name was accepted")
	}
}
