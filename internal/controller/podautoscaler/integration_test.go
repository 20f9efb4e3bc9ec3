package podautoscaler_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/sim"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/deployment"
	"github.com/skiff-sh/skiff/internal/controller/podautoscaler"
	"github.com/skiff-sh/skiff/internal/controller/replicaset"
)

// all runs several controllers as one.
type all []controllertest.Runner

func (a all) Run(ctx context.Context) error {
	errs := make([]error, len(a))
	var wg sync.WaitGroup
	for i, r := range a {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = r.Run(ctx) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// TestScalesDeploymentOnCPU runs a simulated node that reports its pods'
// usage to the real metrics API: the HPA scales a Deployment up while its
// pods use 80% of their CPU request and back down when they use 5%.
func TestScalesDeploymentOnCPU(t *testing.T) {
	rc, cs := controllertest.ControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	capacity, err := agent.Resources("64", "256Gi", "100Gi", 110)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := sim.New(sim.Config{Client: cs, Nodes: 1, Capacity: capacity, MetricsInterval: 300 * time.Millisecond,
		Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- nodes.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-simDone; err != nil {
			t.Errorf("sim nodes: %v", err)
		}
	})
	select {
	case <-nodes.Ready():
	case err := <-simDone:
		t.Fatalf("sim nodes stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("sim nodes not ready")
	}

	factory := informers.NewSharedInformerFactory(cs, 0)
	rsc, err := replicaset.New(replicaset.Config{Client: cs, Factory: factory, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := deployment.New(deployment.Config{Client: cs, Factory: factory, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "horizontal-pod-autoscaler"})
	hc, err := podautoscaler.New(podautoscaler.Config{Client: cs, Metrics: metricsclient.NewForConfigOrDie(rc), Factory: factory,
		Recorder: recorder, Logger: controllertest.Logger(), SyncPeriod: 500 * time.Millisecond, DownscaleStabilization: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, factory, all{rsc, dc, hc})

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{sim.AnnotationCPUUsage: "800m"}},
				Spec: corev1.PodSpec{NodeName: nodes.Names()[0], Containers: []corev1.Container{{Name: "c", Image: "skiff.local/busybox:latest",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}}}}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr(int32(1)), MaxReplicas: 4,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(50))}}}}}}
	if _, err := cs.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	state := func() (*appsv1.Deployment, *autoscalingv2.HorizontalPodAutoscaler, string) {
		d, err1 := cs.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
		h, err2 := cs.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
		if err := errors.Join(err1, err2); err != nil {
			return nil, nil, err.Error()
		}
		s := fmt.Sprintf("deployment replicas %d (ready %d); hpa current %d desired %d", *d.Spec.Replicas, d.Status.ReadyReplicas,
			h.Status.CurrentReplicas, h.Status.DesiredReplicas)
		for _, m := range h.Status.CurrentMetrics {
			if m.Resource != nil && m.Resource.Current.AverageUtilization != nil {
				s += fmt.Sprintf(", cpu %d%%", *m.Resource.Current.AverageUtilization)
			}
		}
		for _, c := range h.Status.Conditions {
			s += fmt.Sprintf(", %s=%s (%s: %s)", c.Type, c.Status, c.Reason, c.Message)
		}
		return d, h, s
	}
	controllertest.Eventually(t, "the HPA scales the Deployment up to maxReplicas", func() (bool, string) {
		d, h, s := state()
		return d != nil && *d.Spec.Replicas == 4 && h.Status.DesiredReplicas == 4 && h.Status.LastScaleTime != nil &&
			hasCondition(h, autoscalingv2.ScalingLimited, corev1.ConditionTrue, "TooManyReplicas"), s
	})
	controllertest.Eventually(t, "a SuccessfulRescale event", func() (bool, string) {
		evs, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "HorizontalPodAutoscaler" && e.Reason == "SuccessfulRescale" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d events", len(evs.Items))
	})

	// the load drops: a new version of the pods uses 5% of its request
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:"50m"}}}}}`, sim.AnnotationCPUUsage)
	if _, err := cs.AppsV1().Deployments("default").Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "the HPA scales the Deployment back down to minReplicas", func() (bool, string) {
		d, h, s := state()
		return d != nil && *d.Spec.Replicas == 1 && h.Status.DesiredReplicas == 1, s
	})
	if _, h, s := state(); !hasCondition(h, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound") {
		t.Errorf("ScalingActive: %s", s)
	}
}

func hasCondition(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType, st corev1.ConditionStatus, reason string) bool {
	for _, c := range h.Status.Conditions {
		if c.Type == typ {
			return c.Status == st && c.Reason == reason
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }
