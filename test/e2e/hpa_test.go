package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// hpaManifest is a Deployment of the test server (100m of CPU requested,
// at most 500m used) and an autoscaling/v2 HPA that keeps its CPU at 50%
// of the requests, with no stabilization so that the test is quick.
const hpaManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: skiff.local/testserver:latest
        imagePullPolicy: Never
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 100m}, limits: {cpu: 500m}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleUp: {stabilizationWindowSeconds: 0}
    scaleDown:
      stabilizationWindowSeconds: 0
      policies: [{type: Percent, value: 100, periodSeconds: 15}]
`

// TestHPAScalesOnRealLoad runs a Deployment of the test server on a
// two-node lab (real containers; usage from the agents' CRI stats through
// the metrics API) under an HPA on CPU at 50%: a load pod keeps one
// replica burning CPU (GET /cpu in a loop) and the HPA scales the
// Deployment up to its maximum; when the load pod is deleted, it scales it
// back down to one. `kubectl top` shows the load on the way.
func TestHPAScalesOnRealLoad(t *testing.T) {
	k := framework.LatestKubectl(t)
	lab := env.StartLab(t, 2)
	lab.BuildImages(t)
	cs, err := lab.Client()
	if err != nil {
		t.Fatal(err)
	}
	const ns = "hpa"
	lab.MustKubectl(t, k, "create", "namespace", ns)
	apply := func(manifest string) {
		t.Helper()
		if r := lab.KubectlWith(k, framework.Cmd{Stdin: manifest}, "apply", "-n", ns, "-f", "-"); r.ExitCode != 0 {
			t.Fatalf("kubectl apply: %s", r)
		}
	}
	apply(hpaManifest)
	ctx := context.Background()
	replicas := func() (int32, string) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return -1, err.Error()
		}
		h, err := cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return -1, err.Error()
		}
		var metrics []string
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				metrics = append(metrics, fmt.Sprintf("cpu %d%%", *m.Resource.Current.AverageUtilization))
			}
		}
		return *d.Spec.Replicas, fmt.Sprintf("deployment replicas %d (available %d), hpa desired %d, metrics %v",
			*d.Spec.Replicas, d.Status.AvailableReplicas, h.Status.DesiredReplicas, metrics)
	}
	var target string
	poll(t, "the first replica running with an IP", 2*time.Minute, func() (bool, string) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods.Items {
			if p.Status.Phase == "Running" && p.Status.PodIP != "" {
				target = p.Status.PodIP
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods", len(pods.Items))
	})
	// the HPA sees the idle replica first and keeps one
	poll(t, "the HPA measuring the idle replica", 2*time.Minute, func() (bool, string) {
		n, s := replicas()
		return n == 1 && strings.Contains(s, "cpu "), s
	})

	// load: one request at a time, each burning a second of CPU in the
	// replica (held to 500m by its limit: 500% of its request)
	apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: load}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: load
    image: skiff.local/busybox:latest
    imagePullPolicy: Never
    command: [sh, -c, "while :; do printf 'GET /cpu?ms=1000 HTTP/1.0\\r\\n\\r\\n' | nc -w 10 %s 8080 >/dev/null; done"]
`, target))
	start := time.Now()
	poll(t, "the HPA scaling the Deployment up to 3", 4*time.Minute, func() (bool, string) {
		n, s := replicas()
		return n == 3, s
	})
	t.Logf("scaled up to 3 replicas %s after the load started", time.Since(start).Round(time.Second))
	top := lab.MustKubectl(t, k, "top", "pods", "-n", ns)
	t.Logf("kubectl top pods:\n%s", top)
	burning := false
	for _, row := range tableRows(top) {
		if len(row) >= 3 && strings.HasPrefix(row[0], "web-") && strings.HasSuffix(row[1], "m") {
			var milli int
			if _, err := fmt.Sscanf(row[1], "%dm", &milli); err == nil && milli > 100 {
				burning = true
			}
		}
	}
	if !burning {
		t.Errorf("kubectl top pods shows no web replica above 100m of CPU:\n%s", top)
	}
	nodes := lab.MustKubectl(t, k, "top", "nodes")
	t.Logf("kubectl top nodes:\n%s", nodes)
	for _, n := range lab.State().Nodes {
		if row := rowNamed(tableRows(nodes), n.Name); len(row) < 5 {
			t.Errorf("kubectl top nodes has no figures for %s:\n%s", n.Name, nodes)
		}
	}
	poll(t, "the 3 replicas available", 3*time.Minute, func() (bool, string) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return d.Status.AvailableReplicas == 3, fmt.Sprintf("available %d", d.Status.AvailableReplicas)
	})

	lab.MustKubectl(t, k, "delete", "pod", "-n", ns, "load", "--grace-period=0", "--force")
	stop := time.Now()
	poll(t, "the HPA scaling the Deployment back down to 1", 4*time.Minute, func() (bool, string) {
		n, s := replicas()
		return n == 1, s
	})
	t.Logf("scaled down to 1 replica %s after the load stopped", time.Since(stop).Round(time.Second))
	events := lab.MustKubectl(t, k, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler")
	if !strings.Contains(events, "SuccessfulRescale") {
		t.Errorf("no SuccessfulRescale events:\n%s", events)
	}
}
