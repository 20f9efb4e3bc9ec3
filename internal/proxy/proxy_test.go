package proxy

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/server"
)

// startControlPlane runs the real API server on embedded etcd.
func startControlPlane(t *testing.T) kubernetes.Interface {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := server.New(server.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", Logger: log,
		DisableControllerManager: true, DisableScheduler: true})
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
	return kubernetes.NewForConfigOrDie(srv.RestConfig())
}

// eventually polls cond until it holds; the deadline only bounds a
// failing test.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not within 60s; last: %s", what, last)
}

func TestProxyFollowsAPI(t *testing.T) {
	node, pod := podNetwork(t)
	serveHTTP(t, pod, "10.99.0.2:8080", "hello from pod")
	client := startControlPlane(t)
	ctx := context.Background()

	p, err := New(Config{Client: client, NodeName: "n1", NetNSFD: openNS(t, node), MinSyncInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
		if err := p.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("proxy: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("proxy not ready")
	}

	svc := service("web", "10.43.0.10", corev1.ServiceTypeClusterIP, port("http", 80, 0))
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Services("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.Spec.ClusterIP, "10.43.") {
		t.Fatalf("ClusterIP %q, want the requested one in 10.43.0.0/16 (routed in the test namespace)", got.Spec.ClusterIP)
	}
	url := "http://" + got.Spec.ClusterIP + "/"

	// no endpoints yet: refused at once
	eventually(t, "refused without endpoints", func() (bool, string) {
		_, err := get(node, url)
		return errors.Is(err, syscall.ECONNREFUSED), "get: " + errString(err)
	})
	sl := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false))
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "answers through the ClusterIP", func() (bool, string) {
		body, err := get(node, url)
		return err == nil && body == "hello from pod", body + errString(err)
	})
	if err := client.DiscoveryV1().EndpointSlices("default").Delete(ctx, sl.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "refused after the endpoints went", func() (bool, string) {
		_, err := get(node, url)
		return errors.Is(err, syscall.ECONNREFUSED), "get: " + errString(err)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
