package manager_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/controller/manager"
)

func startManager(t *testing.T, rc *rest.Config, identity string) (*manager.Manager, context.CancelFunc) {
	t.Helper()
	m, err := manager.New(manager.Config{Rest: rc, Identity: identity,
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
		Logger: controllertest.Logger().With("identity", identity)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx); err != nil {
			t.Errorf("manager %s: %v", identity, err)
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return m, stop
}

// eventually polls cond until it holds; the timeout only bounds a failing test.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: never happened; last state: %s", what, last)
}

// kubelet plays the node agent: every pod becomes Running and Ready.
func kubelet(ctx context.Context, cs kubernetes.Interface) {
	for ctx.Err() == nil {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Status.Phase == corev1.PodRunning || p.DeletionTimestamp != nil {
					continue
				}
				now := metav1.Now()
				p.Status.Phase = corev1.PodRunning
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}
				_, _ = cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}},
		},
	}
}

// rolledOut is kubectl rollout status's verdict.
func rolledOut(d *appsv1.Deployment) bool {
	return d.Generation <= d.Status.ObservedGeneration && d.Status.UpdatedReplicas == *d.Spec.Replicas &&
		d.Status.Replicas == d.Status.UpdatedReplicas && d.Status.AvailableReplicas == d.Status.UpdatedReplicas
}

func TestControlPlane(t *testing.T) {
	rc, _ := controllertest.ControlPlane(t)
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Two managers: one leads, the other stands by.
	a, stopA := startManager(t, rc, "a")
	b, stopB := startManager(t, rc, "b")
	eventually(t, "a manager leads", func() (bool, string) { return a.Leading() || b.Leading(), "" })
	go kubelet(ctx, cs)

	deps := cs.AppsV1().Deployments("default")
	if _, err := deps.Create(ctx, newDeployment("web", 3, "img:1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "3 pods owned by the deployment's replicaset", func() (bool, string) {
		rss, err := cs.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(rss.Items) != 1 {
			return false, fmt.Sprintf("replicasets: %v %v", rss, err)
		}
		rs := rss.Items[0]
		if ref := metav1.GetControllerOf(&rs); ref == nil || ref.Kind != "Deployment" || ref.Name != "web" {
			return false, fmt.Sprintf("replicaset owner %+v", rs.OwnerReferences)
		}
		pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		for _, p := range pods.Items {
			ref := metav1.GetControllerOf(&p)
			if ref == nil || ref.UID != rs.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
				return false, fmt.Sprintf("pod %s owner %+v", p.Name, p.OwnerReferences)
			}
		}
		return len(pods.Items) == 3, fmt.Sprintf("%d pods", len(pods.Items))
	})
	eventually(t, "rollout complete", func() (bool, string) {
		d, err := deps.Get(ctx, "web", metav1.GetOptions{})
		return err == nil && rolledOut(d), fmt.Sprintf("%+v", d.Status)
	})

	// Fail over: the leader goes; the other takes over and keeps going.
	leader, stop, standby := a, stopA, b
	if !a.Leading() {
		leader, stop, standby = b, stopB, a
	}
	stop()
	if leader.Leading() {
		t.Fatalf("%s still leads after it stopped", leader.Identity())
	}
	eventually(t, standby.Identity()+" takes over", func() (bool, string) { return standby.Leading(), "" })

	d, err := deps.Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Template.Spec.Containers[0].Image = "img:2"
	if _, err := deps.Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rolled out img:2: new replicaset at 3, old at 0", func() (bool, string) {
		d, err := deps.Get(ctx, "web", metav1.GetOptions{})
		if err != nil || !rolledOut(d) || d.Annotations["deployment.kubernetes.io/revision"] != "2" {
			return false, fmt.Sprintf("deployment %v %+v", err, d.Status)
		}
		rss, _ := cs.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		state := ""
		ok := len(rss.Items) == 2
		for _, rs := range rss.Items {
			state += fmt.Sprintf("%s(%s)=%d ", rs.Name, rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas)
			want := int32(0)
			if rs.Spec.Template.Spec.Containers[0].Image == "img:2" {
				want = 3
			}
			ok = ok && *rs.Spec.Replicas == want && rs.Status.Replicas == want
		}
		return ok, state
	})

	// Cascading deletes.
	for _, name := range []string{"fg", "bg"} {
		if _, err := deps.Create(ctx, newDeployment(name, 2, "img:1"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"fg", "bg"} {
		eventually(t, name+" rolled out", func() (bool, string) {
			d, err := deps.Get(ctx, name, metav1.GetOptions{})
			return err == nil && rolledOut(d), fmt.Sprintf("%v", err)
		})
	}
	podsOf := func(app string) int {
		pods, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		return len(pods.Items)
	}
	rssOf := func(app string) []appsv1.ReplicaSet {
		rss, _ := cs.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		return rss.Items
	}
	gone := func(name string) func() (bool, string) {
		return func() (bool, string) {
			_, err := deps.Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err) && len(rssOf(name)) == 0 && podsOf(name) == 0,
				fmt.Sprintf("deployment err %v, %d replicasets, %d pods", err, len(rssOf(name)), podsOf(name))
		}
	}

	bg := metav1.DeletePropagationBackground
	if err := deps.Delete(ctx, "bg", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "background: deployment, replicasets and pods gone", gone("bg"))

	fg := metav1.DeletePropagationForeground
	if err := deps.Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "foreground: deployment, replicasets and pods gone", gone("fg"))

	orphan := metav1.DeletePropagationOrphan
	if err := deps.Delete(ctx, "web", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "orphan: deployment gone, replicasets kept without owner", func() (bool, string) {
		_, err := deps.Get(ctx, "web", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return false, fmt.Sprintf("deployment: %v", err)
		}
		rss := rssOf("web")
		for _, rs := range rss {
			if len(rs.OwnerReferences) != 0 {
				return false, fmt.Sprintf("%s owners %+v", rs.Name, rs.OwnerReferences)
			}
		}
		return len(rss) == 2 && podsOf("web") == 3, fmt.Sprintf("%d replicasets, %d pods", len(rss), podsOf("web"))
	})
}
