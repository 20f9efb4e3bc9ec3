package apiserver

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/apiserver/registry/scheduling"
)

func TestPodPriorityAdmission(t *testing.T) {
	ts := startTestServerWith(t, 0, scheduling.Resources()...)
	ctx := context.Background()
	never := corev1.PreemptNever
	lower := corev1.PreemptLowerPriority
	for _, pc := range []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000},
		{ObjectMeta: metav1.ObjectMeta{Name: "polite"}, Value: 500, PreemptionPolicy: &never},
	} {
		if _, err := ts.cs.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := func(name, class string, prio *int32, policy *corev1.PreemptionPolicy) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{PriorityClassName: class, Priority: prio, PreemptionPolicy: policy,
				Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
	}
	i32 := func(v int32) *int32 { return &v }
	tests := []struct {
		name       string
		pod        *corev1.Pod
		wantPrio   int32
		wantClass  string
		wantPolicy corev1.PreemptionPolicy
		wantErr    string // substring of a 403's message
	}{
		{name: "no class, no default", pod: pod("p0", "", nil, nil), wantPrio: 0, wantPolicy: lower},
		{name: "class value", pod: pod("p1", "high", nil, nil), wantPrio: 1000, wantClass: "high", wantPolicy: lower},
		{name: "class policy", pod: pod("p2", "polite", nil, nil), wantPrio: 500, wantClass: "polite", wantPolicy: never},
		{name: "matching priority accepted", pod: pod("p3", "high", i32(1000), nil), wantPrio: 1000, wantClass: "high", wantPolicy: lower},
		{name: "unknown class", pod: pod("p4", "nope", nil, nil), wantErr: "no PriorityClass with name nope was found"},
		{name: "priority differs from class", pod: pod("p5", "high", i32(7), nil), wantErr: "the integer value of priority (7) must not be provided in pod spec"},
		{name: "policy differs from class", pod: pod("p6", "polite", nil, &lower), wantErr: "the string value of PreemptionPolicy (PreemptLowerPriority) must not be provided"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ts.cs.CoreV1().Pods("default").Create(ctx, tc.pod, metav1.CreateOptions{})
			if tc.wantErr != "" {
				if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want 403 with %q", err, tc.wantErr)
				}
				if _, err := ts.cs.CoreV1().Pods("default").Get(ctx, tc.pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("refused pod was stored: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Spec.Priority == nil || *got.Spec.Priority != tc.wantPrio || got.Spec.PriorityClassName != tc.wantClass ||
				got.Spec.PreemptionPolicy == nil || *got.Spec.PreemptionPolicy != tc.wantPolicy {
				t.Errorf("got priority %v class %q policy %v, want %d %q %s",
					got.Spec.Priority, got.Spec.PriorityClassName, got.Spec.PreemptionPolicy, tc.wantPrio, tc.wantClass, tc.wantPolicy)
			}
		})
	}

	// A global default applies to pods that name no class.
	def := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "default-prio"}, Value: 42, GlobalDefault: true}
	if _, err := ts.cs.SchedulingV1().PriorityClasses().Create(ctx, def, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	for i := 0; i < 100; i++ { // the watch cache may lag the class by a moment
		p, err := ts.cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "d-"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got = p
		if p.Spec.PriorityClassName != "" {
			break
		}
	}
	if got.Spec.PriorityClassName != "default-prio" || *got.Spec.Priority != 42 {
		t.Errorf("default class: got %q %v, want default-prio 42", got.Spec.PriorityClassName, *got.Spec.Priority)
	}
}
