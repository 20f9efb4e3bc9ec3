package scheduler

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-sh/skiff/internal/scheduler/queue"
)

// metrics are the scheduler's Prometheus series; a nil *metrics records
// nothing.
type metrics struct {
	attempts *prometheus.HistogramVec
	e2e      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, q *queue.Queue) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "scheduler_scheduling_attempt_duration_seconds", Help: "Duration of one scheduling cycle (filter, score, preemption), by result.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"result"}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scheduler_pod_scheduling_duration_seconds", Help: "Time from a pod's first scheduling attempt to its binding.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
	}
	pending := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "scheduler_pending_pods", Help: "Pods in the scheduling queue, by part."}, []string{"queue"})
	for _, c := range []prometheus.Collector{m.attempts, m.e2e, pendingCollector{q, pending}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("scheduler: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) attempt(result string, d time.Duration) {
	if m != nil {
		m.attempts.WithLabelValues(result).Observe(d.Seconds())
	}
}

func (m *metrics) bound(d time.Duration) {
	if m != nil {
		m.e2e.Observe(d.Seconds())
	}
}

// pendingCollector reads the queue's sizes at scrape time.
type pendingCollector struct {
	q *queue.Queue
	g *prometheus.GaugeVec
}

func (c pendingCollector) Describe(ch chan<- *prometheus.Desc) { c.g.Describe(ch) }

func (c pendingCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.q.Stats()
	c.g.WithLabelValues("active").Set(float64(st.Active))
	c.g.WithLabelValues("backoff").Set(float64(st.Backoff))
	c.g.WithLabelValues("unschedulable").Set(float64(st.Unschedulable))
	c.g.Collect(ch)
}
