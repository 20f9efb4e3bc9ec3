package podautoscaler

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsfake "k8s.io/metrics/pkg/client/clientset/versioned/fake"
)

// fakeScale serves a Deployment's scale subresource from memory.
type fakeScale struct {
	spec, status int32
	updates      []int32
}

func (f *fakeScale) install(c *fake.Clientset) {
	c.PrependReactor("get", "deployments", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns"},
			Spec: autoscalingv1.ScaleSpec{Replicas: f.spec}, Status: autoscalingv1.ScaleStatus{Replicas: f.status, Selector: "app=web"}}, nil
	})
	c.PrependReactor("update", "deployments", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "scale" {
			return false, nil, nil
		}
		s := a.(clienttesting.UpdateAction).GetObject().(*autoscalingv1.Scale)
		f.updates = append(f.updates, s.Spec.Replicas)
		f.spec = s.Spec.Replicas
		return true, s, nil
	})
}

func memoryHPA(kind string, target string) *autoscalingv2.HorizontalPodAutoscaler {
	q := resource.MustParse(target)
	return &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Generation: 1},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: kind, Name: "web"},
			MinReplicas:    ptr(int32(1)), MaxReplicas: 5,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &q}}}}}}
}

func TestSync(t *testing.T) {
	cases := []struct {
		name          string
		hpa           *autoscalingv2.HorizontalPodAutoscaler
		spec, status  int32
		usage         string // memory per pod
		wantUpdates   []int32
		wantDesired   int32
		wantCondition autoscalingv2.HorizontalPodAutoscalerConditionType
		wantStatus    corev1.ConditionStatus
		wantReason    string
		wantEvent     string
	}{
		{name: "scales up on average memory", hpa: memoryHPA("Deployment", "100Mi"), spec: 2, status: 2, usage: "200Mi",
			wantUpdates: []int32{4}, wantDesired: 4, wantCondition: autoscalingv2.AbleToScale, wantStatus: corev1.ConditionTrue,
			wantReason: "SucceededRescale", wantEvent: "Normal SuccessfulRescale New size: 4; reason: memory resource above target"},
		{name: "within tolerance", hpa: memoryHPA("Deployment", "100Mi"), spec: 2, status: 2, usage: "105Mi",
			wantDesired: 2, wantCondition: autoscalingv2.ScalingActive, wantStatus: corev1.ConditionTrue, wantReason: "ValidMetricFound"},
		{name: "above maxReplicas", hpa: memoryHPA("Deployment", "100Mi"), spec: 7, status: 7, usage: "100Mi",
			wantUpdates: []int32{5}, wantDesired: 5, wantCondition: autoscalingv2.AbleToScale, wantStatus: corev1.ConditionTrue,
			wantReason: "SucceededRescale", wantEvent: "Normal SuccessfulRescale New size: 5; reason: Current number of replicas above Spec.MaxReplicas"},
		{name: "target scaled to zero", hpa: memoryHPA("Deployment", "100Mi"), spec: 0, status: 0, usage: "500Mi",
			wantDesired: 0, wantCondition: autoscalingv2.ScalingActive, wantStatus: corev1.ConditionFalse, wantReason: "ScalingDisabled"},
		{name: "a kind without scale", hpa: memoryHPA("DaemonSet", "100Mi"), spec: 2, status: 2, usage: "500Mi",
			wantCondition: autoscalingv2.AbleToScale, wantStatus: corev1.ConditionFalse, wantReason: "FailedGetScale",
			wantEvent: "Warning FailedGetScale"},
		{name: "an unsupported metric type", hpa: func() *autoscalingv2.HorizontalPodAutoscaler {
			h := memoryHPA("Deployment", "100Mi")
			h.Spec.Metrics[0] = autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType}
			return h
		}(), spec: 2, status: 2, usage: "500Mi", wantDesired: 2,
			wantCondition: autoscalingv2.ScalingActive, wantStatus: corev1.ConditionFalse, wantReason: "FailedGetResourceMetric",
			wantEvent: "Warning FailedComputeMetricsReplicas"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			objs := []runtime.Object{tc.hpa}
			mc := metricsfake.NewSimpleClientset()
			for i := 0; i < int(tc.status); i++ {
				p := testPod(i)
				p.Labels = map[string]string{"app": "web"}
				objs = append(objs, p)
				pm := &metricsv1beta1.PodMetrics{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: "ns", Labels: p.Labels},
					Containers: []metricsv1beta1.ContainerMetrics{{Name: "c", Usage: corev1.ResourceList{
						corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse(tc.usage)}}}}
				gvr := metricsv1beta1.SchemeGroupVersion.WithResource("pods")
				if err := mc.Tracker().Create(gvr, pm, "ns"); err != nil {
					t.Fatal(err)
				}
			}
			client := fake.NewClientset(objs...)
			fs := &fakeScale{spec: tc.spec, status: tc.status}
			fs.install(client)
			factory := informers.NewSharedInformerFactory(client, 0)
			rec := record.NewFakeRecorder(10)
			c, err := New(Config{Client: client, Metrics: mc, Factory: factory, Recorder: rec,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			factory.Start(ctx.Done())
			factory.WaitForCacheSync(ctx.Done())
			if after, err := c.Reconcile(ctx, "ns/web"); err != nil || after != DefaultSyncPeriod {
				t.Fatalf("Reconcile: %v, %v", after, err)
			}
			if len(fs.updates) != len(tc.wantUpdates) || len(fs.updates) > 0 && fs.updates[0] != tc.wantUpdates[0] {
				t.Errorf("scale updates %v, want %v", fs.updates, tc.wantUpdates)
			}
			h, err := client.AutoscalingV2().HorizontalPodAutoscalers("ns").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if h.Status.DesiredReplicas != tc.wantDesired {
				t.Errorf("desiredReplicas %d, want %d", h.Status.DesiredReplicas, tc.wantDesired)
			}
			if (len(tc.wantUpdates) > 0) != (h.Status.LastScaleTime != nil) {
				t.Errorf("lastScaleTime %v after updates %v", h.Status.LastScaleTime, fs.updates)
			}
			found := false
			for _, cond := range h.Status.Conditions {
				if cond.Type == tc.wantCondition {
					found = true
					if cond.Status != tc.wantStatus || cond.Reason != tc.wantReason {
						t.Errorf("%s = %s (%s: %s), want %s (%s)", cond.Type, cond.Status, cond.Reason, cond.Message, tc.wantStatus, tc.wantReason)
					}
				}
			}
			if !found {
				t.Errorf("no %s condition in %+v", tc.wantCondition, h.Status.Conditions)
			}
			select {
			case e := <-rec.Events:
				if tc.wantEvent == "" || !strings.HasPrefix(e, tc.wantEvent) {
					t.Errorf("event %q, want %q", e, tc.wantEvent)
				}
			case <-time.After(10 * time.Millisecond):
				if tc.wantEvent != "" {
					t.Errorf("no event, want %q", tc.wantEvent)
				}
			}
		})
	}
}
