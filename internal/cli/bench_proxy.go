package cli

import (
	"context"

	"github.com/skiff-sh/skiff/internal/bench"
)

func benchProxy(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.ProxyConfig
	var asJSON bool
	fs := newFlagSet(e, "bench proxy", `
Program the service proxy's nftables tables (ip skiff-proxy and its 16 shards
ip skiff-proxy-00…15) for --services ClusterIP services
of --endpoints endpoints each inside a private network namespace (never the
host's), and measure a full sync, a restart's reconcile, an incremental sync
(one service's endpoints change) and connect latency through ClusterIPs to a
listener in the namespace. Needs root. One JSON object with --json.`,
		`  skiff bench proxy --services 10000 --json`)
	fs.IntVar(&cfg.Services, "services", 1000, "number of services")
	fs.IntVar(&cfg.Endpoints, "endpoints", 4, "endpoints per service")
	fs.IntVar(&cfg.Connects, "connects", 200, "connections timed through ClusterIPs")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.Proxy(ctx, cfg)
}
