package cri

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
)

// grpcProbe is a grpc probe, as upstream's: grpc.health.v1.Health/Check
// on podIP:port without TLS, for the probe's service ("" when unset),
// within timeout. Only SERVING passes; an unknown service (NotFound), a
// server without the health service, a connection that fails or a check
// that takes too long fail with upstream's words.
func grpcProbe(ctx context.Context, g *corev1.GRPCAction, podIP string, timeout time.Duration) error {
	addr := net.JoinHostPort(podIP, strconv.Itoa(int(g.Port)))
	service := ""
	if g.Service != nil {
		service = *g.Service
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("kube-probe/1.33"))
	if err != nil {
		return fmt.Errorf("error: failed to connect service at %q: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(metadata.NewOutgoingContext(ctx, metadata.MD{}),
		&healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		switch st, _ := status.FromError(err); {
		case st.Code() == codes.Unimplemented:
			return fmt.Errorf("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): %s", st.Message())
		case st.Code() == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
			return fmt.Errorf("timeout: health rpc did not complete within %v", timeout)
		default:
			return fmt.Errorf("error: health rpc probe failed: %w", err)
		}
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("service unhealthy (responded with %q)", resp.GetStatus().String())
	}
	return nil
}
