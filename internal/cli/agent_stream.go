package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-sh/skiff/internal/agent/stream"
)

// startStream runs the node's streaming endpoint (logs, exec, attach,
// port-forward) on nodeIP:--kubelet-port until ctx ends or stop is called.
// It admits the API server's client certificate of the cluster CA, which
// --ca-file or the kubeconfig names.
func startStream(ctx context.Context, f *agentFlags, nodeIP, endpoint, podLogDir string, log *slog.Logger) (stop func(), err error) {
	if f.kubeletPort < 0 || f.kubeletPort > 65535 {
		return nil, usageError{fmt.Errorf("--kubelet-port %d: want 0 (off) or a port", f.kubeletPort)}
	}
	ca, err := f.clusterCA()
	if err != nil {
		return nil, err
	}
	host := nodeIP
	if host == "" {
		log.Warn("the node has no IP; the streaming endpoint listens on every address")
	}
	srv, err := stream.New(stream.Config{Listen: net.JoinHostPort(host, strconv.Itoa(f.kubeletPort)), ClientCA: ca,
		Endpoint: endpoint, PodLogDir: podLogDir, Logger: log})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Run(ctx); err != nil {
			log.Error("the streaming endpoint stopped; kubectl logs, exec and port-forward will fail on this node", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}

// clusterCA is the CA that verifies the API server: --ca-file, or the
// kubeconfig's.
func (f *agentFlags) clusterCA() (*x509.CertPool, error) {
	var pem []byte
	switch {
	case f.caFile != "":
		b, err := os.ReadFile(filepath.Clean(f.caFile))
		if err != nil {
			return nil, fmt.Errorf("read --ca-file: %w", err)
		}
		pem = b
	case f.kubeconfig != "":
		cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("read kubeconfig %s: %w", f.kubeconfig, err)
		}
		pem = cfg.TLSClientConfig.CAData
		if len(pem) == 0 && cfg.TLSClientConfig.CAFile != "" {
			if pem, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
				return nil, fmt.Errorf("read the kubeconfig's CA file: %w", err)
			}
		}
	}
	if len(pem) == 0 {
		return nil, usageError{errors.New("the streaming endpoint (--kubelet-port) admits the API server by the cluster CA: give --ca-file, or a kubeconfig with the CA, or --kubelet-port=0")}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("the cluster CA holds no PEM certificate")
	}
	return pool, nil
}
