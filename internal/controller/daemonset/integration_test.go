package daemonset_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/daemonset"
)

// pinnedTo is the node a pod's required matchFields term names.
func pinnedTo(p *corev1.Pod) string {
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range t.MatchFields {
			if f.Key == "metadata.name" && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// rolledOut is kubectl rollout status's verdict on a DaemonSet.
func rolledOut(ds *appsv1.DaemonSet) bool {
	return ds.Generation <= ds.Status.ObservedGeneration && ds.Status.UpdatedNumberScheduled >= ds.Status.DesiredNumberScheduled &&
		ds.Status.NumberAvailable >= ds.Status.DesiredNumberScheduled
}

func TestDaemonSetOnNodes(t *testing.T) {
	_, cs := controllertest.ControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for _, name := range []string{"n1", "n2", "n3", "tainted"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		if name == "tainted" {
			n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	c, err := daemonset.New(daemonset.Config{Client: cs, Factory: factory, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	controllertest.Run(t, factory, c)
	go controllertest.Nodes(ctx, cs, "default", pinnedTo)

	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "img:1"}}}},
		},
	}
	dss := cs.AppsV1().DaemonSets("default")
	if _, err := dss.Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// podsOn reports the nodes of the DaemonSet's pods with image, and how
	// many pods there are in all.
	podsOn := func(image string) (nodes []string, all int, state string) {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			return nil, 0, err.Error()
		}
		for _, p := range pods.Items {
			state += fmt.Sprintf("%s@%s(%s,%s) ", p.Name, p.Spec.NodeName, p.Spec.Containers[0].Image, p.Status.Phase)
			if p.Spec.Containers[0].Image == image && p.DeletionTimestamp == nil {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
		sort.Strings(nodes)
		return nodes, len(pods.Items), state
	}
	settled := func(image string) func() (bool, string) {
		return func() (bool, string) {
			got, err := dss.Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			nodes, all, state := podsOn(image)
			return rolledOut(got) && got.Status.DesiredNumberScheduled == 3 && all == 3 &&
					slices.Equal(nodes, []string{"n1", "n2", "n3"}),
				fmt.Sprintf("status %+v; pods %s", got.Status, state)
		}
	}
	controllertest.Eventually(t, "one img:1 pod on each untainted node, rolled out", settled("img:1"))

	cur, err := dss.Get(ctx, "agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.Template.Spec.Containers[0].Image = "img:2"
	if _, err := dss.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "img:2 rolled out to each untainted node", settled("img:2"))
	revs, err := cs.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil {
		t.Fatal(err)
	}
	var nums []int64
	for _, r := range revs.Items {
		if ref := metav1.GetControllerOf(&r); ref == nil || ref.Kind != "DaemonSet" || ref.Name != "agent" {
			t.Errorf("revision %s owner %+v", r.Name, r.OwnerReferences)
		}
		nums = append(nums, r.Revision)
	}
	slices.Sort(nums)
	if !slices.Equal(nums, []int64{1, 2}) {
		t.Errorf("revisions %v, want 1 and 2", nums)
	}
}
