package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// DefaultMetricsInterval is how often an agent reports usage to the
// metrics API (metrics-server's default resolution).
const DefaultMetricsInterval = 15 * time.Second

// StatsProvider is an optional interface of a Runtime. The agent of a
// runtime that has it reports the usage Stats returns to the API server's
// metrics API (metrics.k8s.io, what `kubectl top` and the HPA read) every
// Config.MetricsInterval.
type StatsProvider interface {
	// Stats returns the node's usage and that of its running pods. pods
	// are the pods bound to the node as the API has them (the runtime may
	// use them for names and labels, or ignore them); pods the runtime
	// does not run are left out of the result.
	Stats(ctx context.Context, pods []*corev1.Pod) (*NodeStats, error)
}

// NodeStats is the usage of one node and its pods.
type NodeStats struct {
	// Time is when the figures were taken; Window the interval they
	// average over (CPU is a rate).
	Time   time.Time
	Window time.Duration
	// Usage is the node's cpu and memory usage.
	Usage corev1.ResourceList
	// Pods are the running pods' figures.
	Pods []PodStats
}

// PodStats is the usage of one pod's containers.
type PodStats struct {
	Namespace, Name string
	UID             types.UID
	Containers      []ContainerStats
}

// ContainerStats is one container's cpu and memory usage.
type ContainerStats struct {
	Name  string
	Usage corev1.ResourceList
}

// metricsPath is the metrics API's base path.
const metricsPath = "/apis/metrics.k8s.io/v1beta1/"

// Stats returns the usage of the node and its running pods when the
// runtime is a StatsProvider, and nil otherwise.
func (a *Agent) Stats(ctx context.Context) (*NodeStats, error) {
	sp, ok := a.rt.(StatsProvider)
	if !ok {
		return nil, nil
	}
	a.mu.Lock()
	src := a.src
	a.mu.Unlock()
	var pods []*corev1.Pod
	if src != nil {
		for _, p := range src.podsOn(a.cfg.NodeName) {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				pods = append(pods, p)
			}
		}
	}
	st, err := sp.Stats(ctx, pods)
	if err != nil {
		return nil, fmt.Errorf("runtime stats of node %s: %w", a.cfg.NodeName, err)
	}
	return st, nil
}

// reportStats sends the runtime's stats to the metrics API.
func (a *Agent) reportStats(ctx context.Context) error {
	st, err := a.Stats(ctx)
	if err != nil || st == nil {
		return err
	}
	return ReportStats(ctx, a.client, map[string]*NodeStats{a.cfg.NodeName: st})
}

// ReportStats sends the stats of one or more nodes (by node name) to the
// metrics API in two requests: a NodeMetricsList POSTed to
// /apis/metrics.k8s.io/v1beta1/nodes and a PodMetricsList POSTed to .../pods.
// A fake client (no REST client) reports nothing.
func ReportStats(ctx context.Context, client kubernetes.Interface, stats map[string]*NodeStats) error {
	rc := client.CoreV1().RESTClient()
	if c, ok := rc.(*rest.RESTClient); rc == nil || ok && c == nil {
		return nil
	}
	gv := metricsv1beta1.SchemeGroupVersion.String()
	nodes := &metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: gv}}
	pods := &metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: gv}}
	for node, st := range stats {
		if st == nil {
			continue
		}
		n, p := metricsOf(node, st)
		nodes.Items = append(nodes.Items, n)
		pods.Items = append(pods.Items, p...)
	}
	for _, r := range []struct {
		res string
		obj any
	}{{"nodes", nodes}, {"pods", pods}} {
		data, err := json.Marshal(r.obj)
		if err != nil {
			return err
		}
		if err := rc.Post().AbsPath(metricsPath+r.res).SetHeader("Content-Type", "application/json").
			Body(data).Do(ctx).Error(); err != nil {
			return fmt.Errorf("report %s metrics: %w", r.res, err)
		}
	}
	return nil
}

// metricsOf converts a node's stats to the metrics API's types.
func metricsOf(node string, st *NodeStats) (metricsv1beta1.NodeMetrics, []metricsv1beta1.PodMetrics) {
	ts, win := metav1.NewTime(st.Time), metav1.Duration{Duration: st.Window}
	nm := metricsv1beta1.NodeMetrics{ObjectMeta: metav1.ObjectMeta{Name: node}, Timestamp: ts, Window: win, Usage: st.Usage}
	var pods []metricsv1beta1.PodMetrics
	for _, p := range st.Pods {
		pm := metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID},
			Timestamp: ts, Window: win}
		for _, c := range p.Containers {
			pm.Containers = append(pm.Containers, metricsv1beta1.ContainerMetrics{Name: c.Name, Usage: c.Usage})
		}
		pods = append(pods, pm)
	}
	return nm, pods
}
