package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/skiff-sh/skiff/internal/up"
)

func runUp(ctx context.Context, e *env, args []string) error {
	cfg := up.Config{Out: e.stdout}
	fs := newFlagSet(e, "up", `
Start a local cluster for trying skiff out, with a demo app, and print how to
use it. Needs root and Debian's containerd, runc, CNI plugins and nftables
('make deps' installs them; 'make up' runs both).

By default three nodes, each in a network namespace of its own with its own
containerd: one runs the control plane (etcd, API server, scheduler,
controllers, cluster DNS), all run pods. The demo app is a Deployment of a
small HTTP server (3 replicas) behind a LoadBalancer Service, with a page from
a ConfigMap; a port on 127.0.0.1 is forwarded to its LoadBalancer IP inside
the cluster. skiff up prints, among other lines:

  KUBECONFIG=<path>     the admin kubeconfig
  URL=<url>             the demo app, answered by one of its replicas

The cluster runs in the background. Running skiff up again reports it (and
repairs what is missing); skiff status shows its state; skiff down stops it.
Ctrl-C while it starts tears down what was made.`,
		`  skiff up                        # 3 nodes in /var/lib/skiff
  skiff up --nodes 1 --data-dir /tmp/skiff --port 0
  export KUBECONFIG=/var/lib/skiff/kubeconfig
  kubectl get pods -o wide
  curl http://127.0.0.1:8080`)
	fs.StringVar(&cfg.DataDir, "data-dir", up.DefaultDataDir, "directory for the cluster's state, logs and data")
	fs.IntVar(&cfg.Nodes, "nodes", up.DefaultNodes, "number of nodes (1: the smallest cluster)")
	fs.IntVar(&cfg.Port, "port", up.DefaultPort, "port of the demo URL on 127.0.0.1 (0: a free one)")
	fs.StringVar(&cfg.Name, "name", up.DefaultName, "the cluster's name: its network namespaces are skiff-NAME-…, its nodes NAME-0 …")
	fs.StringVar(&cfg.ModuleDir, "module-dir", "", "skiff's source, which the demo image's server is built from (default: found from the working directory or the binary)")
	fs.DurationVar(&cfg.NodeTimeout, "node-timeout", 0, "how long to wait for the nodes to be Ready (default 3m)")
	fs.DurationVar(&cfg.AppTimeout, "app-timeout", 0, "how long to wait for the demo app (default 3m)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.Nodes < 1 || cfg.Nodes > 20 {
		return usageError{fmt.Errorf("--nodes %d: use 1 to 20", cfg.Nodes)}
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return usageError{fmt.Errorf("--port %d: use 0 to 65535", cfg.Port)}
	}
	var err error
	if cfg.Binary, err = os.Executable(); err != nil {
		return err
	}
	if cfg.ModuleDir == "" {
		cfg.ModuleDir = sourceDir(cfg.Binary)
	}
	cfg.Command = commandName(cfg.Binary)
	// A closed terminal (SIGHUP) is a Ctrl-C: up tears down what it made.
	// Output into a closed pipe (skiff up | head) must not kill it
	// half-way: writes fail instead, and the cluster comes up.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	signal.Ignore(syscall.SIGPIPE)
	_, err = up.Up(ctx, cfg)
	var pe *up.PrereqError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot start, %d thing(s) to fix first:\n%s", len(pe.Problems), indentLines(pe.Error()))
	}
	return err
}

// sourceDir finds skiff's source from the working directory, then from
// the binary's directory (bin/skiff of a checkout); "" if neither is in one.
func sourceDir(binary string) string {
	if wd, err := os.Getwd(); err == nil {
		if d, err := findModule(wd); err == nil {
			return d
		}
	}
	if d, err := findModule(filepath.Dir(binary)); err == nil {
		return d
	}
	return ""
}

// commandName is how the user can call the binary: "skiff" when PATH
// finds it, else its path relative to the working directory (bin/skiff
// after make up) or its absolute path.
func commandName(binary string) string {
	if p, err := exec.LookPath("skiff"); err == nil {
		if a, b := fileID(p), fileID(binary); a != "" && a == b {
			return "skiff"
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, binary); err == nil && !strings.HasPrefix(rel, "..") {
			return rel
		}
	}
	return binary
}

// fileID identifies a file by device and inode ("" if it cannot be read).
func fileID(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	return fmt.Sprint(st.Dev, ":", st.Ino)
}

func indentLines(s string) string {
	return "  - " + strings.ReplaceAll(s, "\n", "\n  - ")
}

func runDown(ctx context.Context, e *env, args []string) error {
	var dir string
	var purge bool
	fs := newFlagSet(e, "down", `
Stop the cluster that 'skiff up' started: its server, agents, containerds and
containers, and remove its network namespaces (with their routes and nftables
tables) and mounts. Nothing of it is left running. Its data (etcd, images,
logs) stays in the data dir for the next 'skiff up' unless --purge.`,
		`  skiff down
  skiff down --purge --data-dir /tmp/skiff`)
	fs.StringVar(&dir, "data-dir", up.DefaultDataDir, "the cluster's data directory")
	fs.BoolVar(&purge, "purge", false, "also remove the data directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	found, err := up.Down(ctx, dir, purge, e.stdout)
	if err != nil {
		return err
	}
	if !found {
		fmt.Fprintf(e.stdout, "No skiff cluster is running in %s.\n", dir)
	}
	return nil
}

func runStatus(ctx context.Context, e *env, args []string) error {
	var dir string
	fs := newFlagSet(e, "status", `
Show the cluster that 'skiff up' started at a glance: its components (server
process, API server, controller manager and scheduler leaders, cluster DNS),
its nodes and their health, and the demo app. Exits 0 when all is well, 1
when the cluster is not running or a part of it is not healthy.`,
		`  skiff status
  skiff status --data-dir /tmp/skiff || skiff up --data-dir /tmp/skiff`)
	fs.StringVar(&dir, "data-dir", up.DefaultDataDir, "the cluster's data directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	return up.Status(ctx, dir, e.stdout)
}
