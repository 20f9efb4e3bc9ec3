package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// KubectlDirEnv overrides the directory holding kubectl.1.NN binaries.
const KubectlDirEnv = "SKIFF_E2E_KUBECTL_DIR"

// defaultKubectlDir is where the Google Cloud SDK installs versioned kubectls.
const defaultKubectlDir = "/usr/lib/google-cloud-sdk/bin"

// kubectlTimeout bounds one kubectl invocation.
const kubectlTimeout = 2 * time.Minute

// Kubectl is one stock kubectl binary.
type Kubectl struct {
	// Version is the minor version, like "1.33".
	Version string
	// Path is the binary.
	Path string
}

// KubectlVersions lists the installed kubectl 1.27 … 1.33, oldest first.
func KubectlVersions() []Kubectl {
	dir := os.Getenv(KubectlDirEnv)
	if dir == "" {
		dir = defaultKubectlDir
	}
	var out []Kubectl
	for minor := 27; minor <= 33; minor++ {
		v := fmt.Sprintf("1.%d", minor)
		p := filepath.Join(dir, "kubectl."+v)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			out = append(out, Kubectl{Version: v, Path: p})
		}
	}
	return out
}

// LatestKubectl returns the newest installed kubectl, failing the test if
// there is none.
func LatestKubectl(t testing.TB) Kubectl {
	t.Helper()
	vs := KubectlVersions()
	if len(vs) == 0 {
		t.Fatalf("no kubectl.1.27 … kubectl.1.33 found (set %s)", KubectlDirEnv)
	}
	return vs[len(vs)-1]
}

// Result is what a command printed and how it ended.
type Result struct {
	Stdout, Stderr string
	// ExitCode is the exit status; -1 if the command did not run or was killed.
	ExitCode int
	// Err is set when the command could not run or did not end in time.
	Err error
}

// String describes the result for a failure message.
func (r Result) String() string {
	return fmt.Sprintf("exit %d (err %v)\nstdout:\n%s\nstderr:\n%s", r.ExitCode, r.Err, r.Stdout, r.Stderr)
}

// Cmd describes one kubectl invocation beyond its arguments.
type Cmd struct {
	// Stdin is fed to the command.
	Stdin string
	// Env adds environment variables (KEY=VALUE).
	Env []string
}

// Kubectl runs kubectl k with the admin kubeconfig and args.
func (s *Server) Kubectl(k Kubectl, args ...string) Result {
	return s.KubectlWith(k, Cmd{}, args...)
}

// KubectlWith runs kubectl k with the admin kubeconfig, args and c.
func (s *Server) KubectlWith(k Kubectl, c Cmd, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	return run(ctx, k.Path, nil, c.Stdin, append([]string{"HOME=" + s.home}, c.Env...), s.kubectlArgs(args)...)
}

// MustKubectl runs kubectl and fails the test unless it exits 0; it
// returns stdout.
func (s *Server) MustKubectl(t testing.TB, k Kubectl, args ...string) string {
	t.Helper()
	r := s.Kubectl(k, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s %s: %s", k.Version, strings.Join(args, " "), r)
	}
	return r.Stdout
}

// KubectlCommand prepares (but does not start) a kubectl command, for
// long-running invocations such as `get -w` and `wait`.
func (s *Server) KubectlCommand(ctx context.Context, k Kubectl, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.Path, s.kubectlArgs(args)...)
	cmd.Env = append(os.Environ(), "HOME="+s.home)
	return cmd
}

func (s *Server) kubectlArgs(args []string) []string {
	return append([]string{"--kubeconfig", s.Kubeconfig(), "--cache-dir", filepath.Join(s.home, "kube-cache")}, args...)
}

// run runs bin and collects its output.
func run(ctx context.Context, bin string, stdout io.Writer, stdin string, env []string, args ...string) Result {
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdout != nil {
		cmd.Stdout = io.MultiWriter(&out, stdout)
	}
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String(), ExitCode: cmd.ProcessState.ExitCode()}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		r.Err = err
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("%s did not finish: %w", bin, ctx.Err())
	}
	return r
}
