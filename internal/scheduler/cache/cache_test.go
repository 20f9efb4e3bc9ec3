package cache

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

func node(name string) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("4")}}}
}

func pod(name, nodeName, cpu string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
		Spec: v1.PodSpec{NodeName: nodeName, Containers: []v1.Container{{Resources: v1.ResourceRequirements{
			Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}}},
	}
}

func requested(t *testing.T, c *Cache, name string) int64 {
	t.Helper()
	ni := c.Snapshot().Get(name)
	if ni == nil {
		t.Fatalf("node %s not in snapshot", name)
	}
	return ni.Requested.MilliCPU
}

func TestAssumeConfirmForget(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := New(clk, 30*time.Second)
	c.AddNode(node("n1"))
	first := c.Snapshot().Get("n1")

	a := pod("a", "n1", "1")
	if err := c.AssumePod(a); err != nil {
		t.Fatal(err)
	}
	if err := c.AssumePod(a); err == nil {
		t.Error("assuming twice succeeded")
	}
	if got := requested(t, c, "n1"); got != 1000 {
		t.Errorf("after assume: %d", got)
	}
	if first.Requested.MilliCPU != 0 {
		t.Error("an earlier snapshot's NodeInfo was changed")
	}
	// The informer confirms the binding: no double counting.
	c.AddPod(a)
	if got := requested(t, c, "n1"); got != 1000 || c.IsAssumed(a.UID) {
		t.Errorf("after confirm: %d assumed=%v", got, c.IsAssumed(a.UID))
	}

	b := pod("b", "n1", "2")
	if err := c.AssumePod(b); err != nil {
		t.Fatal(err)
	}
	c.ForgetPod(b)
	if got := requested(t, c, "n1"); got != 1000 || c.Contains(b.UID) {
		t.Errorf("after forget: %d", got)
	}

	c.RemovePod(a)
	if got := requested(t, c, "n1"); got != 0 {
		t.Errorf("after remove: %d", got)
	}
}

func TestAssumedPodsExpireAfterBinding(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	c := New(clk, 30*time.Second)
	c.AddNode(node("n1"))
	a := pod("a", "n1", "1")
	if err := c.AssumePod(a); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Hour)
	if n := c.CleanupExpired(); n != 0 {
		t.Fatalf("expired %d pods whose binding is still running", n)
	}
	c.FinishBinding(a)
	clk.Step(29 * time.Second)
	if n := c.CleanupExpired(); n != 0 {
		t.Fatalf("expired too early")
	}
	clk.Step(2 * time.Second)
	if n := c.CleanupExpired(); n != 1 || requested(t, c, "n1") != 0 {
		t.Fatalf("expected expiry, got %d", n)
	}
}

func TestNodeRemovalKeepsPodsUntilDeleted(t *testing.T) {
	c := New(clocktesting.NewFakeClock(time.Unix(0, 0)), time.Second)
	c.AddNode(node("n1"))
	c.AddNode(node("n2"))
	p := pod("a", "n1", "1")
	c.AddPod(p)
	c.RemoveNode("n1")
	if c.Snapshot().Get("n1") != nil || len(c.Snapshot().Nodes()) != 1 || c.NodeCount() != 1 {
		t.Fatal("removed node still scheduled onto")
	}
	c.AddNode(node("n1"))
	if got := requested(t, c, "n1"); got != 1000 {
		t.Errorf("re-added node lost its pod: %d", got)
	}
	// Pods seen before their node still count.
	c.AddPod(pod("b", "n3", "1"))
	c.AddNode(node("n3"))
	if got := requested(t, c, "n3"); got != 1000 {
		t.Errorf("pod seen before node: %d", got)
	}
}
