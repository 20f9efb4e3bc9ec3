package cri_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
)

// stats runs a pod that burns CPU (held to half a core by its limit) and
// reads its usage back from the metrics API, as `kubectl top` does: the
// agent reports what the CRI runtime's stats say.
func (h *harness) stats(t *testing.T) {
	ctx := context.Background()
	c := busybox("burn", "while :; do :; done")
	c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}
	grace := int64(0)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "burn"}, Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{c, busybox("idle", "exec sleep 3600")}}}
	h.runPod(t, pod, "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	get := func(path string, into any) error {
		b, err := h.cs.CoreV1().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/" + path).DoRaw(ctx)
		if err != nil {
			return err
		}
		return json.Unmarshal(b, into)
	}
	var last []metricsv1beta1.ContainerMetrics
	controllertest.Eventually(t, "the burning container's usage in the metrics API", func() (bool, string) {
		var pm metricsv1beta1.PodMetrics
		if err := get("namespaces/default/pods/burn", &pm); err != nil {
			return false, err.Error()
		}
		last = pm.Containers
		usage := map[string]corev1.ResourceList{}
		for _, c := range pm.Containers {
			usage[c.Name] = c.Usage
		}
		burn, idle := usage["burn"], usage["idle"]
		return len(usage) == 2 && burn.Cpu().MilliValue() > 100 && burn.Memory().Value() > 0 &&
				idle.Cpu().MilliValue() < 100 && idle.Memory().Value() > 0,
			fmt.Sprintf("%+v", pm.Containers)
	})
	for _, c := range last {
		t.Logf("container %s: cpu %s, memory %s", c.Name, c.Usage.Cpu(), c.Usage.Memory())
	}
	var nm metricsv1beta1.NodeMetrics
	if err := get("nodes/"+nodeName, &nm); err != nil {
		t.Fatal(err)
	}
	t.Logf("node: cpu %s, memory %s, window %s", nm.Usage.Cpu(), nm.Usage.Memory(), nm.Window.Duration)
	if nm.Usage.Cpu().MilliValue() <= 100 || nm.Usage.Memory().Value() <= 0 || nm.Window.Duration <= 0 {
		t.Errorf("node metrics %+v, want more than 100m of CPU (a pod burns half a core) and some memory", nm)
	}
}
