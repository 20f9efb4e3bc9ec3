package framework

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/lab"
)

var labSeq atomic.Int32

// Lab is a running multi-node lab (internal/lab): every node in its own
// network namespace with its own containerd, the server in node 0's,
// reached from the host through a forwarder on 127.0.0.1.
type Lab struct {
	*lab.Lab
	env  *Env
	home string
	dir  string
}

// LabOptions configures a lab.
type LabOptions struct {
	// Nodes is the number of nodes (default 3).
	Nodes int
	// PodNetwork is the agents' --pod-network (default host-gw).
	PodNetwork string
	// ServerArgs are appended to the server's command line (e.g.
	// --load-balancer-pool).
	ServerArgs []string
}

// StartLab starts a lab of n nodes, waits until they are Ready and tears
// it down (checking that nothing is left) when the test ends. It skips the
// test when the machine cannot run one (not root, no containerd).
func (e *Env) StartLab(t testing.TB, n int) *Lab {
	t.Helper()
	return e.StartLabWith(t, LabOptions{Nodes: n})
}

// StartLabWith is StartLab with options.
func (e *Env) StartLabWith(t testing.TB, opts LabOptions) *Lab {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if why := lab.Missing(); why != "" {
		t.Skip(why)
	}
	root := t.TempDir()
	name := fmt.Sprintf("e2e%d-%d", os.Getpid()%100000, labSeq.Add(1))
	logf, err := os.Create(filepath.Join(root, "lab.log"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(lab.Config{Name: name, Dir: filepath.Join(root, "lab"), Binary: e.Binary, Nodes: opts.Nodes, PodNetwork: opts.PodNetwork,
		ServerArgs: opts.ServerArgs,
		Logger:     slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	L := &Lab{Lab: l, env: e, home: filepath.Join(root, "home"), dir: filepath.Join(root, "lab")}
	if err := os.MkdirAll(L.home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			L.printLogs(t)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		namespaces := l.Namespaces()
		if err := l.Down(ctx); err != nil {
			t.Errorf("lab down: %v", err)
		}
		logf.Close()
		L.checkGone(t, name)
		if pids := lab.ProcessesIn(namespaces); len(pids) > 0 {
			t.Errorf("lab down left processes in the lab's network namespaces: %v", pids)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := l.Up(ctx); err != nil {
		t.Fatalf("lab up: %v", err)
	}
	if err := l.WaitNodesReady(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	return L
}

// printLogs prints the tails of the server's and agents' logs.
func (l *Lab) printLogs(t testing.TB) {
	st := l.State()
	t.Logf("skiff server log (kept as %s):\n%s", keepLog(t, l.ServerLog(), "lab-server"), tail(l.ServerLog(), logTailBytes/2))
	for i, n := range st.Nodes {
		t.Logf("skiff agent %s log (kept as %s):\n%s", n.Name, keepLog(t, l.AgentLog(i), "lab-agent-"+n.Name), tail(l.AgentLog(i), logTailBytes/2))
	}
}

// checkGone fails the test if a namespace, mount or registry entry of the
// lab is left after Down.
func (l *Lab) checkGone(t testing.TB, _ string) { CheckLabGone(t, l.State()) }

// CheckLabGone fails the test if a network namespace, a mount below its
// directory or a containerd registry entry of the lab st is left (after
// Down, skiff lab down or skiff down).
func CheckLabGone(t testing.TB, st lab.State) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Errorf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "skiff-"+st.Name+"-") {
			t.Errorf("lab down left network namespace %s", line)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], st.Dir+"/") {
			t.Errorf("lab down left a mount: %s", line)
		}
	}
	for _, n := range st.Nodes {
		if _, err := os.Lstat(filepath.Join(containerd.DefaultRegistryDir, n.Name+".sock")); err == nil {
			t.Errorf("lab down left %s in the containerd registry", n.Name)
		}
	}
}

// Home is a HOME directory for the lab's clients.
func (l *Lab) Home() string { return l.home }

// Kubectl runs kubectl k against the lab (admin kubeconfig through the
// forwarder on 127.0.0.1) with args.
func (l *Lab) Kubectl(k Kubectl, args ...string) Result { return l.KubectlWith(k, Cmd{}, args...) }

// KubectlWith runs kubectl k against the lab with args and c.
func (l *Lab) KubectlWith(k Kubectl, c Cmd, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	return run(ctx, k.Path, nil, c.Stdin, append([]string{"HOME=" + l.home}, c.Env...),
		append([]string{"--kubeconfig", l.Kubeconfig(), "--cache-dir", filepath.Join(l.home, "kube-cache")}, args...)...)
}

// MustKubectl runs kubectl and fails the test unless it exits 0; it
// returns stdout.
func (l *Lab) MustKubectl(t testing.TB, k Kubectl, args ...string) string {
	t.Helper()
	r := l.Kubectl(k, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s %s: %s", k.Version, strings.Join(args, " "), r)
	}
	return r.Stdout
}

// BuildImages puts skiff.local/busybox and skiff.local/testserver into
// every lab node's containerd: `skiff images build --no-import` makes the
// archives once per run (in Env.WorkDir), and they are imported into each
// node's containerd as `skiff images build` imports them.
func (l *Lab) BuildImages(t testing.TB) {
	t.Helper()
	dir, err := l.env.testImages()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nodes := l.State().Nodes
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			im := containerd.Importer{Address: filepath.Join(n.DataDir, "containerd", "containerd.sock")}
			for _, name := range []string{image.BusyboxName, image.TestserverName} {
				if err := im.Import(ctx, name, filepath.Join(dir, image.ArchiveFileName(name))); err != nil {
					errs[i] = fmt.Errorf("import %s into %s: %w", name, n.Name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

// testImages builds the test images' archives once per run.
func (e *Env) testImages() (string, error) {
	e.images.Do(func() {
		base := e.WorkDir
		if base == "" {
			base = os.TempDir()
		}
		dir, err := os.MkdirTemp(base, "images-")
		if err != nil {
			e.imagesErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		r := run(ctx, e.Binary, nil, "", nil, "images", "build", "--out", dir, "--no-import", "--log-level", "warn")
		if r.ExitCode != 0 || r.Err != nil {
			e.imagesErr = fmt.Errorf("skiff images build: %s", r)
			return
		}
		e.imagesDir = dir
	})
	return e.imagesDir, e.imagesErr
}
