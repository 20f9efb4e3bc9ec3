// Package controllertest starts what a controller's integration test
// needs: the real API server on embedded etcd (without the controller
// manager and scheduler), an informer factory, and a bounded poll.
package controllertest

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/server"
)

// Logger logs warnings and errors to stderr.
func Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// ControlPlane runs the API server until the test ends and returns a
// client of it.
func ControlPlane(t *testing.T) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	rc, cs, _ := ControlPlaneDir(t)
	return rc, cs
}

// ControlPlaneDir is ControlPlane that also returns the server's data
// directory (its CA is in pki/ under it).
func ControlPlaneDir(t *testing.T) (*rest.Config, kubernetes.Interface, string) {
	t.Helper()
	return controlPlane(t, nil)
}

// ControlPlaneWith is ControlPlane with the server's configuration
// changed by edit (e.g. cluster DNS turned on).
func ControlPlaneWith(t *testing.T, edit func(*server.Config)) (*rest.Config, kubernetes.Interface) {
	t.Helper()
	rc, cs, _ := controlPlane(t, edit)
	return rc, cs
}

func controlPlane(t *testing.T, edit func(*server.Config)) (*rest.Config, kubernetes.Interface, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Listen: "127.0.0.1:0", Logger: Logger(),
		DisableControllerManager: true, DisableScheduler: true}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Log("control plane did not stop within 30s")
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("control plane: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("control plane not ready")
	}
	return srv.RestConfig(), kubernetes.NewForConfigOrDie(srv.RestConfig()), dir
}

// Runner is a controller.
type Runner interface {
	Run(ctx context.Context) error
}

// Run starts factory and the controller until the test ends or stop is
// called.
func Run(t *testing.T, factory informers.SharedInformerFactory, c Runner) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("controller: %v", err)
		}
	}()
	factory.Start(ctx.Done())
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			factory.Shutdown()
		})
	}
	t.Cleanup(stop)
	return stop
}

// Eventually polls cond until it holds; the 60s deadline only bounds a
// failing test.
func Eventually(t *testing.T, what string, cond func() (bool, string)) {
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

// SetPodStatus plays the kubelet: the pod default/name runs with ip and
// its Ready condition says ready.
func SetPodStatus(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, ip string, ready bool) {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// CreatePod creates the pod default/name with labels on node, its one
// container exposing the port named "web" (8080).
func CreatePod(ctx context.Context, t *testing.T, cs kubernetes.Interface, name, node string, labels map[string]string) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "img",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080}}}}}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Nodes plays the scheduler and the kubelets for the pods in namespace
// until ctx ends: it binds each pending pod to the node place names (none
// when ""), runs bound pods (Running and Ready) and finishes graceful
// deletions at once.
func Nodes(ctx context.Context, cs kubernetes.Interface, namespace string, place func(*corev1.Pod) string) {
	pods := cs.CoreV1().Pods(namespace)
	for ctx.Err() == nil {
		list, err := pods.List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range list.Items {
				p := &list.Items[i]
				switch {
				case p.DeletionTimestamp != nil:
					_ = pods.Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &p.UID}})
				case p.Spec.NodeName == "":
					if node := place(p); node != "" {
						_ = pods.Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
							Target: corev1.ObjectReference{Kind: "Node", Name: node}}, metav1.CreateOptions{})
					}
				case p.Status.Phase != corev1.PodRunning:
					p.Status.Phase = corev1.PodRunning
					p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
					_, _ = pods.UpdateStatus(ctx, p, metav1.UpdateOptions{})
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}
