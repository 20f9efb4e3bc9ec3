package disruption_test

import (
	"context"
	"fmt"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/disruption"
)

func TestBudgetStatusAndEviction(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()
	f := informers.NewSharedInformerFactory(cs, 0)
	c, err := disruption.New(disruption.Config{Client: cs, Factory: f, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, f, c)

	// A ReplicaSet of 3 (no ReplicaSet controller runs: the test makes its pods).
	labels := map[string]string{"app": "web"}
	three := int32(3)
	rs, err := cs.AppsV1().ReplicaSets("default").Create(ctx, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &three, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img"}}}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "b", "c"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"))}},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "img"}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		controllertest.SetPodStatus(ctx, t, cs, name, fmt.Sprintf("10.42.0.%d", i+1), name != "c")
	}
	one := intstr.FromInt32(1)
	_, err = cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one, Selector: &metav1.LabelSelector{MatchLabels: labels}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := func(want string) func() (bool, string) {
		return func() (bool, string) {
			pdb, err := cs.PolicyV1().PodDisruptionBudgets("default").Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			st := pdb.Status
			cond := apimeta.FindStatusCondition(st.Conditions, policyv1.DisruptionAllowedCondition)
			reason := ""
			if cond != nil {
				reason = cond.Reason
			}
			got := fmt.Sprintf("expected=%d desired=%d healthy=%d allowed=%d %s", st.ExpectedPods, st.DesiredHealthy, st.CurrentHealthy, st.DisruptionsAllowed, reason)
			return got == want && st.ObservedGeneration == pdb.Generation, got
		}
	}
	controllertest.Eventually(t, "2 of 3 healthy, none to spare", status("expected=3 desired=2 healthy=2 allowed=0 InsufficientPods"))
	evict := func(name string) error {
		return cs.CoreV1().Pods("default").EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}})
	}
	if err := evict("a"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("evicting with no disruption allowed: %v, want 429", err)
	}
	controllertest.SetPodStatus(ctx, t, cs, "c", "10.42.0.3", true)
	controllertest.Eventually(t, "3 healthy, one to spare", status("expected=3 desired=2 healthy=3 allowed=1 SufficientPods"))
	if err := evict("a"); err != nil {
		t.Fatalf("evicting with one disruption allowed: %v", err)
	}
	// a terminates (graceful: it has a node); the budget is spent.
	controllertest.Eventually(t, "a evicted, budget spent", status("expected=3 desired=2 healthy=2 allowed=0 InsufficientPods"))
	if err := evict("b"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("evicting past the budget: %v, want 429", err)
	}
	// Scaling the ReplicaSet changes what is expected.
	rs, _ = cs.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
	five := int32(5)
	rs.Spec.Replicas = &five
	if _, err := cs.AppsV1().ReplicaSets("default").Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "expected follows the scale", status("expected=5 desired=4 healthy=2 allowed=0 InsufficientPods"))
}
