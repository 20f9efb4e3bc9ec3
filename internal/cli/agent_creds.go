package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/agent/nodecreds"
)

// node is the agent's node name: --node-name, or this machine's hostname.
func (f *agentFlags) node() (string, error) {
	if f.nodeName != "" {
		return f.nodeName, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("node name: %w", err)
	}
	return strings.ToLower(h), nil
}

// nodeCredentials gives a CRI agent joined with --server its own client
// certificate (DATA_DIR/node.kubeconfig, through a CSR made with the
// bootstrap token on first start) and returns a client configuration that
// uses it; the certificate is renewed in the background until stop.
func (f *agentFlags) nodeCredentials(ctx context.Context, bootstrap *rest.Config, log *slog.Logger) (*rest.Config, func(), error) {
	name, err := f.node()
	if err != nil {
		return nil, nil, err
	}
	dataDir, err := filepath.Abs(f.dataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("--data-dir: %w", err)
	}
	cfg := nodecreds.Config{NodeName: name, DataDir: dataDir, Logger: log}
	if f.token != "" {
		cfg.Bootstrap = bootstrap
	}
	creds, err := nodecreds.Obtain(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	rc, err := creds.RestConfig(bootstrap)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := creds.Run(ctx); err != nil {
			log.Error("node certificate renewal stopped", "err", err)
		}
	}()
	return rc, func() { cancel(); <-done }, nil
}
