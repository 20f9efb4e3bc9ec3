package framework

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// AgentOptions configures one `skiff agent --runtime=sim`.
type AgentOptions struct {
	// Nodes is the number of simulated nodes (default 1).
	Nodes int
	// NamePrefix names the nodes <prefix>0 … (default "sim-").
	NamePrefix string
	// ExtraArgs are appended to the agent's command line, e.g.
	// --node-labels or --register-with-taints.
	ExtraArgs []string
}

// Agent is a running `skiff agent --runtime=sim` that joined a Server
// with a bootstrap token.
type Agent struct {
	logPath string
	proc    *process
}

// StartSimAgent creates a bootstrap token with `skiff token create` and
// starts `skiff agent --runtime=sim` against the server with it. It does not
// wait for the nodes; the agent is stopped when the test ends and its log
// printed if the test failed.
func (s *Server) StartSimAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "sim-"
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := s.Skiff(ctx, "token", "create", "--kubeconfig", s.Kubeconfig(), "--description", "e2e "+opts.NamePrefix)
	if r.ExitCode != 0 {
		t.Fatalf("skiff token create: %s", r)
	}
	token := strings.TrimSpace(r.Stdout)
	logPath := filepath.Join(t.TempDir(), "agent-"+opts.NamePrefix+".log")
	args := append([]string{"agent", "--runtime=sim", "--nodes", strconv.Itoa(opts.Nodes), "--name-prefix", opts.NamePrefix,
		"--server", s.URL(), "--token", token, "--ca-file", filepath.Join(s.dataDir, "pki", "ca.crt"),
		"--data-dir", filepath.Join(t.TempDir(), "agent")}, opts.ExtraArgs...)
	p, err := startProcess(logPath, []string{"HOME=" + s.home}, s.env.Binary, args...)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{logPath: logPath, proc: p}
	t.Cleanup(func() {
		if p.stop(stopGrace) {
			t.Errorf("skiff agent %s did not stop within %s of SIGTERM; sent SIGQUIT and killed it", opts.NamePrefix, stopGrace)
		}
		if t.Failed() {
			t.Logf("skiff agent %s log (kept as %s):\n%s", opts.NamePrefix, keepLog(t, a.logPath, "agent-"+opts.NamePrefix), tail(a.logPath, logTailBytes))
		}
	})
	return a
}

// Kill stops the agent with SIGKILL: its nodes stop heartbeating at once.
func (a *Agent) Kill() { a.proc.kill() }

// Exited reports whether the agent process has ended.
func (a *Agent) Exited() bool { return a.proc.exited() }
