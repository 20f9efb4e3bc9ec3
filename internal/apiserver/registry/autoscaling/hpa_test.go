package autoscaling

import (
	"reflect"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func newHPA() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MaxReplicas:    5,
		},
	}
}

func TestHPADefault(t *testing.T) {
	r := Resources()[0]
	if r.Plural != "horizontalpodautoscalers" || r.Singular != "horizontalpodautoscaler" || !reflect.DeepEqual(r.ShortNames, []string{"hpa"}) ||
		!reflect.DeepEqual(r.Categories, []string{"all"}) || !r.Namespaced || !r.Status || r.GVK.Version != "v2" {
		t.Errorf("resource %+v", r)
	}
	s := r.Strategy
	h := newHPA()
	s.Default(h)
	want := []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr(int32(80))}}}}
	if *h.Spec.MinReplicas != 1 || !reflect.DeepEqual(h.Spec.Metrics, want) || h.Spec.Behavior != nil {
		t.Errorf("defaults %+v", h.Spec)
	}
	if errs := s.ValidateCreate(h); len(errs) != 0 {
		t.Errorf("valid hpa: %v", errs)
	}
	h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr(int32(60))}}
	s.Default(h)
	b := h.Spec.Behavior
	if len(b.ScaleUp.Policies) != 2 || *b.ScaleUp.StabilizationWindowSeconds != 0 || *b.ScaleDown.StabilizationWindowSeconds != 60 ||
		len(b.ScaleDown.Policies) != 1 || *b.ScaleDown.SelectPolicy != autoscalingv2.MaxChangePolicySelect {
		t.Errorf("behavior defaults %+v %+v", b.ScaleUp, b.ScaleDown)
	}
	if errs := s.ValidateCreate(h); len(errs) != 0 {
		t.Errorf("valid hpa with behavior: %v", errs)
	}
}

func TestHPAValidate(t *testing.T) {
	s := Resources()[0].Strategy
	tests := []struct {
		name   string
		modify func(*autoscalingv2.HorizontalPodAutoscaler)
		want   []string
	}{
		{"min above max", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = ptr(int32(6)) }, []string{"spec.maxReplicas"}},
		{"zero max", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MaxReplicas = 0 }, []string{"spec.maxReplicas", "spec.maxReplicas"}},
		{"zero min", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = ptr(int32(0)) }, []string{"spec.minReplicas"}},
		{"no target", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{}
		},
			[]string{"spec.scaleTargetRef.kind", "spec.scaleTargetRef.name"}},
		{"resource without target", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType,
				Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType}}}}
		}, []string{"spec.metrics[0].resource.target.averageUtilization"}},
		{"type without source", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType}}
		}, []string{"spec.metrics[0].pods"}},
		{"unknown type", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: "Magic"}}
		}, []string{"spec.metrics[0].type"}},
		{"zero utilization", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics[0].Resource.Target.AverageUtilization = ptr(int32(0))
		}, []string{"spec.metrics[0].resource.target.averageUtilization"}},
		{"bad policy", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{
				Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 0, PeriodSeconds: 4000}}}}
		}, []string{"spec.behavior.scaleUp.policies[0].value", "spec.behavior.scaleUp.policies[0].periodSeconds"}},
	}
	for _, tt := range tests {
		h := newHPA()
		s.Default(h)
		tt.modify(h)
		errs := s.ValidateCreate(h)
		var got []string
		for _, e := range errs {
			got = append(got, e.Field)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, errs, tt.want)
		}
	}
	h := newHPA()
	h.Spec.MinReplicas = ptr(int32(6))
	errs := s.ValidateCreate(h)
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeInvalid || errs[0].Detail != "must be greater than or equal to `minReplicas`" {
		t.Errorf("errors %v", errs)
	}
}

func TestHPARow(t *testing.T) {
	s := Resources()[0].Strategy
	now := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	h := newHPA()
	h.CreationTimestamp = metav1.NewTime(now.Add(-7 * time.Minute))
	s.Default(h)
	want := []interface{}{"web", "Deployment/web", "cpu: <unknown>/80%", "1", int64(5), int64(0), "7m"}
	if got := s.Row(h, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	q := resource.MustParse("100Mi")
	h.Spec.Metrics = append(h.Spec.Metrics,
		autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
			Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &q}}},
		autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
			Metric: autoscalingv2.MetricIdentifier{Name: "qps"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: &q}}})
	h.Status = autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: 2, CurrentMetrics: []autoscalingv2.MetricStatus{{
		Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU,
			Current: autoscalingv2.MetricValueStatus{AverageUtilization: ptr(int32(42))}}}}}
	want = []interface{}{"web", "Deployment/web", "cpu: 42%/80%, memory: <unknown>/100Mi + 1 more...", "1", int64(5), int64(2), "7m"}
	if got := s.Row(h, now); !reflect.DeepEqual(got, want) {
		t.Errorf("row %#v, want %#v", got, want)
	}
	h.Spec.Metrics, h.Spec.MinReplicas = nil, nil
	if got := s.Row(h, now); got[2] != "<none>" || got[3] != "<unset>" {
		t.Errorf("row without metrics %#v", got)
	}
	var names []string
	for _, c := range s.Columns() {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, []string{"Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"}) {
		t.Errorf("columns %v", names)
	}
}
