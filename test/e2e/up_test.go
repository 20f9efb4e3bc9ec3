package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/lab"
	"github.com/skiff-sh/skiff/test/e2e/framework"
)

// TestUp is the newcomer's path (issue 7): `skiff up` from the freshly
// built binary starts a 3-node cluster with the demo app; the printed URL
// answers from the host, from all three replicas; kubectl sees 3 Ready
// nodes; skiff status is happy; a second `skiff up` reports the running
// cluster with the same lines; `skiff down` leaves no namespace, route,
// nftables table, mount or process behind.
//
// The first start is `make up` in a fresh clone of this repository (its
// committed state), as a newcomer runs it: make deps, make build, then
// `bin/skiff up`, with UP_ARGS moving the data dir, the port and the
// cluster name off the user's defaults (/var/lib/skiff, 8080, local). The
// later steps use the binary under test. Missing prerequisites (no
// containerd, not root, port in use) are covered by internal/up's TestCheck
// and TestCheckRealPathWithoutContainerd (a PATH without containerd), since
// a test cannot uninstall containerd.
func TestUp(t *testing.T) {
	if why := lab.Missing(); why != "" {
		t.Skip(why)
	}
	k := framework.LatestKubectl(t)
	dir := filepath.Join(t.TempDir(), "skiff")
	name := fmt.Sprintf("up%d", os.Getpid()%100000)
	clone := cloneRepo(t)
	before := hostSnapshot(t)
	downDone := false
	t.Cleanup(func() {
		if !downDone {
			r := skiff(t, 2*time.Minute, "down", "--data-dir", dir)
			t.Logf("cleanup: skiff down: %s", r)
		}
	})

	r := run(t, clone, 8*time.Minute, "make", "up", fmt.Sprintf("UP_ARGS=--data-dir %s --port 0 --name %s", dir, name))
	t.Logf("make up:\n%s", r.Stdout)
	if r.ExitCode != 0 || r.Err != nil {
		printUpLogs(t, dir)
		t.Fatalf("make up: %s", r)
	}
	kubeconfig, url := outputLine(t, r.Stdout, "KUBECONFIG="), outputLine(t, r.Stdout, "URL=")
	if !strings.Contains(r.Stdout, "export KUBECONFIG="+kubeconfig) || !strings.Contains(r.Stdout, "READINESS GATES") {
		t.Errorf("skiff up printed no export line or no `kubectl get pods -o wide` view")
	}

	// the demo app answers through the URL, from every replica
	pods := map[string]bool{}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 60 && len(pods) < 3; i++ {
		var echo struct {
			PodName string `json:"podName"`
		}
		if err := getJSON(hc, url, &echo); err != nil {
			t.Fatalf("GET %s (request %d): %v", url, i+1, err)
		}
		pods[echo.PodName] = true
	}
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(k.Path, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	names := strings.Fields(kubectl("get", "pods", "-l", "app=demo", "-o", "jsonpath={.items[*].metadata.name}"))
	if len(pods) != 3 || len(names) != 3 {
		t.Fatalf("60 requests reached replicas %v; the demo pods are %v", keys(pods), names)
	}
	for _, n := range names {
		if !pods[n] {
			t.Errorf("replica %s never answered (answers from %v)", n, keys(pods))
		}
	}
	if page := httpGet(t, hc, url+"/page"); !strings.Contains(page, "Hello from skiff") {
		t.Errorf("the ConfigMap page: %q", page)
	}

	// kubectl get nodes shows 3 Ready
	nodes := kubectl("get", "nodes", "--no-headers")
	ready := 0
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "Ready" {
			ready++
		}
	}
	if ready != 3 {
		t.Errorf("kubectl get nodes: want 3 Ready:\n%s", nodes)
	}

	if st := skiff(t, time.Minute, "status", "--data-dir", dir); st.ExitCode != 0 || !strings.Contains(st.Stdout, "✓ 3/3 replicas ready") {
		t.Errorf("skiff status: %s", st)
	}

	// a second skiff up reports the running cluster with the same lines
	again := skiff(t, 3*time.Minute, "up", "--data-dir", dir, "--port", "0", "--name", name)
	if again.ExitCode != 0 || !strings.Contains(again.Stdout, "already running") ||
		outputLine(t, again.Stdout, "KUBECONFIG=") != kubeconfig || outputLine(t, again.Stdout, "URL=") != url {
		t.Errorf("second skiff up: %s", again)
	}

	// skiff down leaves nothing behind
	l, err := lab.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	inodes, st := l.Namespaces(), l.State()
	down := skiff(t, 2*time.Minute, "down", "--data-dir", dir)
	downDone = true
	if down.ExitCode != 0 {
		t.Fatalf("skiff down: %s", down)
	}
	checkNothingLeft(t, before, dir, inodes, st)
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after skiff down", url)
	}
	if st := skiff(t, time.Minute, "status", "--data-dir", dir); st.ExitCode == 0 {
		t.Errorf("skiff status after down: exit 0, want nonzero: %s", st)
	}
	if purge := skiff(t, time.Minute, "down", "--purge", "--data-dir", dir); purge.ExitCode != 0 {
		t.Errorf("skiff down --purge: %s", purge)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("skiff down --purge left %s: %v", dir, err)
	}
}

// TestUpInterrupted sends Ctrl-C (SIGINT) to `skiff up` once its cluster
// is starting and checks that it tears down everything it made.
func TestUpInterrupted(t *testing.T) {
	if why := lab.Missing(); why != "" {
		t.Skip(why)
	}
	dir := filepath.Join(t.TempDir(), "skiff")
	name := fmt.Sprintf("ui%d", os.Getpid()%100000)
	before := hostSnapshot(t)
	cmd := exec.Command(env.Binary, "up", "--data-dir", dir, "--port", "0", "--name", name, "--nodes", "2")
	cmd.Dir = moduleDir(t)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command(env.Binary, "down", "--data-dir", dir).Run() })
	// once the lab is up (its state file names what to tear down), interrupt
	var out strings.Builder
	var inodes map[uint64]bool
	var st lab.State
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "nodes Ready") {
			if l, err := lab.Load(dir, nil); err == nil {
				inodes, st = l.Namespaces(), l.State()
			}
			_ = cmd.Process.Signal(os.Interrupt)
			break
		}
	}
	done := make(chan error, 1)
	go func() {
		_, _ = io.Copy(&out, stdout)
		done <- cmd.Wait()
	}()
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("skiff up did not end within 2m of Ctrl-C:\n%s", out.String())
	}
	t.Logf("skiff up (interrupted):\n%s%s", out.String(), stderr.String())
	if err == nil {
		t.Fatalf("skiff up exited 0 after Ctrl-C")
	}
	if inodes == nil {
		t.Fatalf("the lab's state was not readable when skiff up reported its nodes")
	}
	if !strings.Contains(stderr.String(), "interrupted; nothing is left running") {
		t.Errorf("stderr does not say it tore down: %s", stderr.String())
	}
	checkNothingLeft(t, before, dir, inodes, st)
}

// host is what a cluster must not leave on the host: routes and nftables
// tables of the host's namespace.
type host struct {
	routes map[string]bool
	tables string
}

func hostSnapshot(t *testing.T) host {
	return host{routes: hostRouteSet(t), tables: nftTables(t)}
}

func nftTables(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		t.Fatalf("nft list tables: %v", err)
	}
	return string(out)
}

// checkNothingLeft fails the test if the cluster in dir left a
// network namespace, a host route or nftables table, a mount below dir, a
// process in its namespaces or one that names dir, a containerd registry
// entry or its state file.
func checkNothingLeft(t *testing.T, before host, dir string, inodes map[uint64]bool, st lab.State) {
	t.Helper()
	framework.CheckLabGone(t, st) // namespaces, mounts below dir, registry entries
	for _, r := range hostRoutes(t) {
		if !before.routes[r] {
			t.Errorf("left a host route: %s", r)
		}
	}
	if after := nftTables(t); after != before.tables {
		t.Errorf("host nftables tables changed:\nbefore:\n%s\nafter:\n%s", before.tables, after)
	}
	if pids := lab.ProcessesIn(inodes); len(pids) > 0 {
		t.Errorf("left processes in the cluster's network namespaces: %v", pids)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(dir)) {
			t.Errorf("left process %s: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, lab.StateFile)); err == nil {
		t.Errorf("left %s", lab.StateFile)
	}
}

// skiff runs the binary with args from the module's root (skiff up finds
// the source of the demo image there).
func skiff(t *testing.T, timeout time.Duration, args ...string) framework.Result {
	t.Helper()
	return run(t, moduleDir(t), timeout, env.Binary, args...)
}

// cloneRepo clones this repository's committed state into a temporary
// directory, as a newcomer's clean clone.
func cloneRepo(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	if r := run(t, moduleDir(t), 2*time.Minute, "git", "clone", "-q", "--no-hardlinks", moduleDir(t), dir); r.ExitCode != 0 || r.Err != nil {
		t.Fatalf("git clone: %s", r)
	}
	return dir
}

// run runs a command in dir, bounded by timeout.
func run(t *testing.T, dir string, timeout time.Duration, name string, args ...string) framework.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := framework.Result{Stdout: out.String(), Stderr: errb.String(), ExitCode: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("%s %s did not end within %s", name, strings.Join(args, " "), timeout)
	} else if err != nil && r.ExitCode < 0 {
		r.Err = err
	}
	return r
}

func moduleDir(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd)) // test/e2e → the module root
}

// outputLine returns the value of the line "PREFIXvalue" in out.
func outputLine(t *testing.T, out, prefix string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimPrefix(line, prefix)
		}
	}
	t.Fatalf("no %s line in:\n%s", prefix, out)
	return ""
}

func getJSON(hc *http.Client, url string, v any) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func httpGet(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// printUpLogs prints the tails of the cluster's logs in dir.
func printUpLogs(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, p := range logs {
		b, _ := os.ReadFile(p)
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("%s (tail):\n%s", p, b)
	}
}
