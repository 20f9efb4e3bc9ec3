package apiserver

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

func TestResourceMetrics(t *testing.T) {
	ts := startTestServer(t)
	ctx := context.Background()
	node, err := ts.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var uids []types.UID
	for _, name := range []string{"web-1", "web-2", "db"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name[:2]}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
		created, err := ts.cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, created.UID)
	}
	now := metav1.Now()
	usage := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	nodes := metricsv1beta1.NodeMetricsList{TypeMeta: metav1.TypeMeta{Kind: "NodeMetricsList", APIVersion: "metrics.k8s.io/v1beta1"},
		Items: []metricsv1beta1.NodeMetrics{{ObjectMeta: metav1.ObjectMeta{Name: node.Name}, Timestamp: now, Usage: usage},
			{ObjectMeta: metav1.ObjectMeta{Name: "gone"}, Timestamp: now, Usage: usage}}}
	pods := metricsv1beta1.PodMetricsList{TypeMeta: metav1.TypeMeta{Kind: "PodMetricsList", APIVersion: "metrics.k8s.io/v1beta1"}}
	for i, name := range []string{"web-1", "web-2", "db", "gone"} {
		uid := types.UID("other")
		if i < len(uids) {
			uid = uids[i]
		}
		if name == "db" {
			uid = "stale" // an older pod of that name
		}
		pods.Items = append(pods.Items, metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid},
			Timestamp: now, Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: usage}}})
	}
	for res, obj := range map[string]any{"nodes": nodes, "pods": pods} {
		data, _ := json.Marshal(obj)
		if err := ts.cs.CoreV1().RESTClient().Post().AbsPath("/apis/metrics.k8s.io/v1beta1/"+res).
			SetHeader("Content-Type", "application/json").Body(data).Do(ctx).Error(); err != nil {
			t.Fatalf("report %s: %v", res, err)
		}
	}
	mc := metricsclient.NewForConfigOrDie(ts.rest)
	nl, err := mc.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{LabelSelector: "zone=a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(nl.Items) != 1 || nl.Items[0].Name != "n1" || nl.Items[0].Usage.Cpu().MilliValue() != 250 || nl.Items[0].Labels["zone"] != "a" {
		t.Errorf("node metrics: %+v", nl.Items)
	}
	pl, err := mc.MetricsV1beta1().PodMetricses("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Items) != 2 || pl.Items[0].Name != "web-1" || pl.Items[1].Name != "web-2" {
		t.Errorf("pod metrics: want web-1 and web-2 (db's report is of another pod, gone is gone), got %+v", pl.Items)
	}
	pl, err = mc.MetricsV1beta1().PodMetricses("default").List(ctx, metav1.ListOptions{LabelSelector: "app=we"})
	if err != nil || len(pl.Items) != 2 {
		t.Errorf("pod metrics by selector: %v, %+v", err, pl)
	}
	pm, err := mc.MetricsV1beta1().PodMetricses("default").Get(ctx, "web-2", metav1.GetOptions{})
	if err != nil || pm.Containers[0].Usage.Memory().Value() != 64<<20 {
		t.Errorf("get pod metrics: %v, %+v", err, pm)
	}
	if _, err := mc.MetricsV1beta1().PodMetricses("default").Get(ctx, "db", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("metrics of a pod with another UID: want NotFound, got %v", err)
	}
	if _, err := mc.MetricsV1beta1().NodeMetricses().Get(ctx, "gone", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("metrics of a node that does not exist: want NotFound, got %v", err)
	}
	// discovery, as kubectl top checks it
	rl, err := ts.cs.Discovery().ServerResourcesForGroupVersion("metrics.k8s.io/v1beta1")
	if err != nil || len(rl.APIResources) != 2 {
		t.Fatalf("discovery: %v, %+v", err, rl)
	}
	_, lists, err := ts.cs.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range lists {
		found = found || l.GroupVersion == "metrics.k8s.io/v1beta1"
	}
	if !found {
		t.Error("aggregated discovery does not list metrics.k8s.io/v1beta1")
	}
}

func TestResourceMetricsExpire(t *testing.T) {
	m := newResourceMetrics(time.Minute)
	t0 := time.Now()
	m.reportNodes([]metricsv1beta1.NodeMetrics{{ObjectMeta: metav1.ObjectMeta{Name: "a"}}}, t0)
	m.reportNodes([]metricsv1beta1.NodeMetrics{{ObjectMeta: metav1.ObjectMeta{Name: "b"}}}, t0.Add(2*time.Minute))
	if _, ok := m.nodes["a"]; ok {
		t.Error("a report older than the TTL is kept")
	}
	if _, ok := m.nodes["b"]; !ok {
		t.Error("a fresh report is dropped")
	}
}
