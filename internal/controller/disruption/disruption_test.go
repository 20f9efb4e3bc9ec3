package disruption

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func pod(name, owner string, ready bool, mut ...func(*corev1.Pod)) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
	if owner != "" {
		isController := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: owner, UID: types.UID(owner), Controller: &isController}}
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

// scales: ReplicaSet rs3 has 3 replicas, rs5 5; others have no scale.
func scales(_ string, ref *metav1.OwnerReference) (int32, types.UID, bool) {
	n, ok := map[string]int32{"rs3": 3, "rs5": 5}[ref.Name]
	return n, ref.UID, ok
}

func TestCompute(t *testing.T) {
	minAvail := func(v intstr.IntOrString) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns", Generation: 2},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &v}}
	}
	maxUnavail := func(v intstr.IntOrString) *policyv1.PodDisruptionBudget {
		return &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns", Generation: 2},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &v}}
	}
	withDisrupted := func(pdb *policyv1.PodDisruptionBudget, m map[string]metav1.Time) *policyv1.PodDisruptionBudget {
		pdb.Status.DisruptedPods = m
		return pdb
	}
	three := []*corev1.Pod{pod("a", "rs3", true), pod("b", "rs3", true), pod("c", "rs3", false)}
	deleting := func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: t0} }
	tests := []struct {
		name    string
		pdb     *policyv1.PodDisruptionBudget
		pods    []*corev1.Pod
		want    string // expected/desired/healthy/allowed
		reason  string
		recheck time.Duration
		err     bool
	}{
		{name: "minAvailable int counts matching pods", pdb: minAvail(intstr.FromInt32(1)), pods: three, want: "3/1/2/1", reason: policyv1.SufficientPodsReason},
		{name: "minAvailable int, none to spare", pdb: minAvail(intstr.FromInt32(2)), pods: three, want: "3/2/2/0", reason: policyv1.InsufficientPodsReason},
		{name: "minAvailable int without controllers", pdb: minAvail(intstr.FromInt32(1)), pods: []*corev1.Pod{pod("a", "", true), pod("b", "", true)}, want: "2/1/2/1", reason: policyv1.SufficientPodsReason},
		{name: "minAvailable percent of the scale, rounded up", pdb: minAvail(intstr.FromString("50%")), pods: three[:2], want: "3/2/2/0", reason: policyv1.InsufficientPodsReason},
		{name: "maxUnavailable int of the scale", pdb: maxUnavail(intstr.FromInt32(1)), pods: three, want: "3/2/2/0", reason: policyv1.InsufficientPodsReason},
		{name: "maxUnavailable percent over two controllers", pdb: maxUnavail(intstr.FromString("25%")),
			pods: append([]*corev1.Pod{pod("d", "rs5", true), pod("e", "rs5", true), pod("f", "rs5", true), pod("g", "rs5", true)}, three...),
			want: "8/6/6/0", reason: policyv1.InsufficientPodsReason},
		{name: "maxUnavailable more than the scale", pdb: maxUnavail(intstr.FromInt32(5)), pods: three, want: "3/0/2/2", reason: policyv1.SufficientPodsReason},
		{name: "no pods: nothing allowed", pdb: maxUnavail(intstr.FromInt32(1)), want: "0/0/0/0", reason: policyv1.InsufficientPodsReason},
		{name: "terminating pods are not healthy", pdb: minAvail(intstr.FromInt32(0)),
			pods: []*corev1.Pod{pod("a", "rs3", true, deleting), pod("b", "rs3", true)}, want: "2/0/1/1", reason: policyv1.SufficientPodsReason},
		{name: "recently disrupted pods are not healthy", pdb: withDisrupted(minAvail(intstr.FromInt32(1)), map[string]metav1.Time{
			"a": {Time: t0.Add(-time.Minute)}, "b": {Time: t0.Add(-3 * time.Minute)}}),
			pods: three, want: "3/1/1/0", reason: policyv1.InsufficientPodsReason, recheck: time.Minute},
		{name: "maxUnavailable without controller", pdb: maxUnavail(intstr.FromInt32(1)), pods: []*corev1.Pod{pod("a", "", true)}, err: true},
		{name: "maxUnavailable with a controller without scale", pdb: maxUnavail(intstr.FromInt32(1)), pods: []*corev1.Pod{pod("a", "job", true)}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, recheck, err := Compute(tt.pdb, tt.pods, scales, t0)
			if tt.err {
				if err == nil {
					t.Fatalf("no error; status %+v", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fmt.Sprintf("%d/%d/%d/%d", st.ExpectedPods, st.DesiredHealthy, st.CurrentHealthy, st.DisruptionsAllowed)
			if got != tt.want {
				t.Errorf("expected/desired/healthy/allowed = %s, want %s", got, tt.want)
			}
			if st.ObservedGeneration != 2 {
				t.Errorf("observedGeneration %d", st.ObservedGeneration)
			}
			c := apimeta.FindStatusCondition(st.Conditions, policyv1.DisruptionAllowedCondition)
			if c == nil || c.Reason != tt.reason || (c.Status == metav1.ConditionTrue) != (st.DisruptionsAllowed > 0) {
				t.Errorf("condition %+v, want reason %s", c, tt.reason)
			}
			var gotRecheck time.Duration
			if !recheck.IsZero() {
				gotRecheck = recheck.Sub(t0)
			}
			if gotRecheck != tt.recheck {
				t.Errorf("recheck in %v, want %v", gotRecheck, tt.recheck)
			}
		})
	}
}
