package cri

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
)

// stuckHealth answers no check before the caller gives up.
type stuckHealth struct {
	healthpb.UnimplementedHealthServer
}

func (stuckHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// serveGRPC runs a gRPC server on loopback with register's services and
// returns its port.
func serveGRPC(t *testing.T, register func(*grpc.Server)) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func TestGRPCProbe(t *testing.T) {
	hs := health.NewServer() // "" is SERVING
	hs.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthy := serveGRPC(t, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, hs) })
	stuck := serveGRPC(t, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, stuckHealth{}) })
	noHealth := serveGRPC(t, func(*grpc.Server) {})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := int32(l.Addr().(*net.TCPAddr).Port)
	l.Close()

	svc := func(s string) *string { return &s }
	for _, tc := range []struct {
		name    string
		port    int32
		service *string
		timeout time.Duration
		err     string // "" means it passes
	}{
		{"no service: the server's overall health", healthy, nil, 5 * time.Second, ""},
		{"serving service", healthy, svc("up"), 5 * time.Second, ""},
		{"not serving", healthy, svc("down"), 5 * time.Second, `service unhealthy (responded with "NOT_SERVING")`},
		{"unknown service", healthy, svc("nope"), 5 * time.Second, "error: health rpc probe failed"},
		{"no health service", noHealth, nil, 5 * time.Second, "does not implement the grpc health protocol"},
		{"timeout", stuck, nil, 200 * time.Millisecond, "timeout: health rpc did not complete within 200ms"},
		{"nothing listening", closed, nil, 5 * time.Second, "error: health rpc probe failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := grpcProbe(context.Background(), &corev1.GRPCAction{Port: tc.port, Service: tc.service}, "127.0.0.1", tc.timeout)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("probe failed: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("probe error %v, want one with %q", err, tc.err)
			}
		})
	}
}

// TestProbeRunsGRPC checks that the prober runs a container's grpc probe
// (it once counted as passing).
func TestProbeRunsGRPC(t *testing.T) {
	hs := health.NewServer()
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	port := serveGRPC(t, func(s *grpc.Server) { healthpb.RegisterHealthServer(s, hs) })
	pr := newProber(&Runtime{})
	for service, ok := range map[string]bool{"": true, "down": false} {
		probe := &corev1.Probe{TimeoutSeconds: 5, ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: port, Service: &service}}}
		err := pr.probe(context.Background(), &corev1.Pod{}, &corev1.Container{Name: "c"}, "id", "127.0.0.1", probe)
		if (err == nil) != ok {
			t.Errorf("service %q on %s: %v, want ok=%v", service, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), err, ok)
		}
	}
}
