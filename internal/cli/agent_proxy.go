package cli

import (
	"context"
	"log/slog"

	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/proxy"
)

// runProxy starts the service proxy for node beside the agent; stop ends
// it and waits. The table stays when the agent stops, so a restart keeps
// established connections and the rules.
func runProxy(ctx context.Context, client kubernetes.Interface, node string, log *slog.Logger) (stop func(), err error) {
	p, err := proxy.New(proxy.Config{Client: client, NodeName: node, Logger: log.With("component", "proxy")})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			log.Error("service proxy stopped", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}
