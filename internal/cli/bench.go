package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/bench"
)

// Commit is the git commit skiff was built from, set with -ldflags.
var Commit = "unknown"

func runBench(ctx context.Context, e *env, args []string) error {
	scenarios := map[string]func(context.Context, *env, []string) (bench.Result, error){
		"api":     benchAPI,
		"startup": benchStartup,
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(e.stderr, "Usage: skiff bench <scenario> [flags] [--json]\n\nScenarios: api, startup\nRun 'skiff bench <scenario> --help' for its flags.\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return usageError{fmt.Errorf("expected a scenario")}
	}
	run, ok := scenarios[args[0]]
	if !ok {
		return usageError{fmt.Errorf("unknown scenario %q (have: api, startup)", args[0])}
	}
	res, err := run(ctx, e, args[1:])
	if err != nil {
		return err
	}
	res.Commit = Commit
	asJSON := false
	for _, a := range args {
		if a == "--json" || a == "-json" {
			asJSON = true
		}
	}
	return res.Write(e.stdout, asJSON)
}

func benchAPI(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.APIConfig
	var asJSON bool
	fs := newFlagSet(e, "bench api", `
Start a control plane with embedded etcd in a temporary directory and measure
the API server: pod creates, gets, full lists and watch delivery, with
concurrent clients. Prints a table, or one JSON object with --json.`,
		`  skiff bench api --pods 10000 --json`)
	fs.IntVar(&cfg.Pods, "pods", 10000, "number of pods to create, get and list")
	fs.IntVar(&cfg.Workers, "clients", 32, "number of concurrent clients")
	fs.BoolVar(&cfg.Protobuf, "protobuf", false, "use the protobuf wire format instead of JSON")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	cfg.Progress = e.stderr
	return bench.API(ctx, cfg)
}

func benchStartup(ctx context.Context, e *env, args []string) (bench.Result, error) {
	var cfg bench.StartupConfig
	var asJSON bool
	fs := newFlagSet(e, "bench startup", `
Start 'skiff server' as a new process and measure the time from process start
until /readyz answers 200 (on a fresh data dir and again on the same data
dir), and the server's resident memory after it idles.`,
		`  skiff bench startup --json`)
	fs.DurationVar(&cfg.Idle, "idle", 5*time.Second, "how long the server idles before its memory is read")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object")
	if err := parse(fs, args); err != nil {
		return bench.Result{}, err
	}
	return bench.Startup(ctx, cfg)
}
