// Package cli implements skiff's subcommands: each parses its flags into a
// component's Config and runs it.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
)

// Version is skiff's version, set at build time with -ldflags.
var Version = "dev"

// command is one subcommand: run, or for a command group, one of group's
// subcommands.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
	group   *group
}

// env is what a command writes to.
type env struct {
	stdout, stderr io.Writer
}

func commands() []command {
	return []command{
		{name: "server", summary: "run the control plane (API server on etcd) on this machine", run: runServer},
		{name: "up", summary: "start a local 3-node cluster with a demo app in the background and print how to use it", run: runUp},
		{name: "down", summary: "stop the cluster skiff up started and remove what it made (--purge: its data too)", run: runDown},
		{name: "status", summary: "show the components, nodes and demo app of the cluster skiff up started", run: runStatus},
		{name: "token", summary: "manage bearer tokens for nodes and automation (token create)", group: tokenGroup()},
		{name: "bench", summary: "run a benchmark scenario and print its figures (skiff bench --help lists the scenarios)", group: benchGroup()},
		{name: "scheduler", summary: "run the scheduler alone against an API server (--kubeconfig), leader-elected", run: runScheduler},
		{name: "controller-manager", summary: "run the controllers (leader-elected) against an API server", run: runControllerManager},
		{name: "images", summary: "build the test images (busybox, testserver) as OCI archives (images build)", group: imagesGroup()},
		{name: "agent", summary: "run a node agent that registers a node and runs its pods (--runtime=sim for simulated nodes)", run: runAgent},
		{name: "lab", summary: "run a multi-node lab on this machine, a network namespace per node (lab up, lab down)", group: labGroup()},
		{name: "version", summary: "print skiff's version", run: runVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `skiff is a Kubernetes-compatible container orchestrator in one binary.

Usage:
  skiff <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Run 'skiff <command> --help' for a command's flags and examples.

Example (as root; make up builds skiff and runs this):
  skiff up                  # a 3-node cluster with a demo app; prints KUBECONFIG= and URL=
  export KUBECONFIG=/var/lib/skiff/kubeconfig
  kubectl get pods -o wide
  curl http://127.0.0.1:8080
  skiff down                # stop it (--purge: remove its data too)

A control plane alone: skiff server --data-dir DIR; a node: skiff agent.
`)
}

// Main runs skiff with args (without the program name) and returns the
// process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		// Until a command sets up its logger, client-go's klog lines below
		// warnings (lease acquired, watch restarted) are not printed.
		klog.SetSlogLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		run := c.run
		if c.group != nil {
			run = c.group.run
		}
		err := run(ctx, &env{stdout: stdout, stderr: stderr}, args[1:])
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "skiff %s: %v\nRun 'skiff %s --help' for usage.\n", c.name, err, c.name)
			return 2
		}
		if err != nil {
			fmt.Fprintf(stderr, "skiff %s: %v\n", c.name, err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "skiff: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// usageError is an error in how a command was called.
type usageError struct{ error }

// newFlagSet returns a flag set whose --help prints the description,
// example and flags of a command.
func newFlagSet(e *env, name, description, example string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: skiff %s [flags]\n\n%s\n", name, strings.TrimSpace(description))
		if example != "" {
			fmt.Fprintf(out, "\nExample:\n%s\n", example)
		}
		fmt.Fprintf(out, "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: use debug, info, warn or error", level)}
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
	// client-go logs through klog (leader election, reflectors): send it
	// to the command's logger instead of klog's own stderr format.
	klog.SetSlogLogger(log.With("source", "client-go"))
	return log, nil
}

func runVersion(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version", "Print skiff's version and the Kubernetes API version it serves.", "")
	if err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "skiff %s (Kubernetes API %s)\n", Version, kubernetesVersion())
	return nil
}
