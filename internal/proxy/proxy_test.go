package proxy

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/controller/controllertest"
)

func TestProxyFollowsAPI(t *testing.T) {
	node, pod := podNetwork(t)
	serveHTTP(t, pod, "10.99.0.2:8080", "hello from pod")
	_, client := controllertest.ControlPlane(t)
	ctx := context.Background()

	p, err := New(Config{Client: client, NodeName: "n1", NetNSFD: openNS(t, node), MinSyncInterval: 50 * time.Millisecond,
		Logger: controllertest.Logger()})
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
	controllertest.Eventually(t, "refused without endpoints", func() (bool, string) {
		_, err := get(node, url)
		return errors.Is(err, syscall.ECONNREFUSED), "get: " + errString(err)
	})
	sl := slice("web", "http", 8080, ep("10.99.0.2", "n1", true, false))
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "answers through the ClusterIP", func() (bool, string) {
		body, err := get(node, url)
		return err == nil && body == "hello from pod", body + errString(err)
	})
	if err := client.DiscoveryV1().EndpointSlices("default").Delete(ctx, sl.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "refused after the endpoints went", func() (bool, string) {
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
