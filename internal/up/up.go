// Package up is `skiff up`, `skiff down` and `skiff status`: a local
// cluster for trying skiff out, as a newcomer meets it. Up starts a
// detached lab (internal/lab: a network namespace per node, the server in
// node 0's, an agent with its own containerd per node) whose server hands
// LoadBalancer IPs out of the lab's subnet, builds the demo images into
// every node's containerd, deploys the demo app (the test HTTP server, 3
// replicas behind a LoadBalancer Service, a page from a ConfigMap), waits
// until it answers, forwards a port on 127.0.0.1 to its LoadBalancer IP
// inside the lab, and prints how to use it. A second Up reports the
// running cluster; a failed or interrupted Up tears down what it made.
package up

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/lab"
)

// Defaults of Config.
const (
	DefaultDataDir = "/var/lib/skiff"
	DefaultName    = "local"
	DefaultNodes   = 3
	DefaultPort    = 8080
	// DemoForward names the lab forwarder of the demo URL.
	DemoForward = "demo"
	// LogFile is where Up writes the lab's own log lines, in the data dir.
	LogFile = "up.log"
)

// Config configures Up.
type Config struct {
	// DataDir holds the cluster's state, logs and data.
	DataDir string
	// Name names the lab: namespaces skiff-NAME-…, nodes NAME-0 ….
	Name string
	// Nodes is the number of nodes (one server node and Nodes-1 agents).
	Nodes int
	// Port is the demo URL's port on 127.0.0.1 (0: a free one).
	Port int
	// Binary is the skiff executable the lab runs.
	Binary string
	// Command is how the user calls skiff, for the hints printed (default
	// "skiff"; e.g. bin/skiff when it is not on PATH).
	Command string
	// ModuleDir is skiff's source, which the testserver image is built
	// from ("" when not found: a prerequisite problem).
	ModuleDir string
	// NodeTimeout and AppTimeout bound the waits for the nodes and the
	// demo app (defaults 3 minutes each).
	NodeTimeout, AppTimeout time.Duration
	// Host is the machine the prerequisites are checked on (default RealHost).
	Host *Host
	// Out receives the progress and the result.
	Out io.Writer
}

func (c *Config) defaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.Nodes <= 0 {
		c.Nodes = DefaultNodes
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = 3 * time.Minute
	}
	if c.AppTimeout <= 0 {
		c.AppTimeout = 3 * time.Minute
	}
	if c.Host == nil {
		h := RealHost()
		c.Host = &h
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Command == "" {
		c.Command = "skiff"
	}
}

// Result is what Up prints at the end: the lines other tools rely on.
type Result struct {
	DataDir    string
	Kubeconfig string
	URL        string
	Nodes      int
	// Pods is the `kubectl get pods -o wide` view of the demo app.
	Pods string
	// Reused is true when the cluster was running already.
	Reused bool
	// Command is how to call skiff in the hints (Config.Command).
	Command string
}

// Up starts the cluster (or finds it running), deploys the demo app and
// returns how to use it, which it has also printed to cfg.Out.
func Up(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dir
	started := time.Now()
	pr := newProgress(cfg.Out, time.Now)

	if l, running, err := loadRunning(ctx, dir); err != nil {
		return nil, err
	} else if running {
		fmt.Fprintf(cfg.Out, "skiff is already running in %s; checking it:\n", dir)
		if n := len(l.State().Nodes); n != cfg.Nodes {
			fmt.Fprintf(cfg.Out, "  (it has %s, not %d: %s down%s first to start it with another number)\n", nodes(n), cfg.Nodes, cfg.Command, dirFlag(dir))
		}
		res, err := finish(ctx, cfg, pr, l, false)
		if err != nil {
			return nil, fmt.Errorf("%w\nthe cluster is still running: %s status%s shows its state, %s down%s stops it", err, cfg.Command, dirFlag(dir), cfg.Command, dirFlag(dir))
		}
		res.Reused = true
		printResult(cfg.Out, res, time.Since(started))
		return res, nil
	} else if l != nil {
		if err := pr.step("clean up the stopped cluster left in "+dir, func(func(string)) error {
			return l.Down(context.WithoutCancel(ctx))
		}); err != nil {
			return nil, fmt.Errorf("cleaning up the stopped cluster: %w (try skiff down --data-dir %s)", err, dir)
		}
	}

	fmt.Fprintf(cfg.Out, "Starting a %d-node skiff cluster in %s:\n", cfg.Nodes, dir)
	if err := pr.step("prerequisites", func(func(string)) error {
		if problems := Check(*cfg.Host, cfg); len(problems) > 0 {
			return &PrereqError{Problems: problems}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	pool, err := lbPool(lab.DefaultSubnet)
	if err != nil {
		return nil, err
	}
	l, err := lab.New(lab.Config{Name: cfg.Name, Dir: dir, Binary: cfg.Binary, Nodes: cfg.Nodes, Detach: true,
		ServerArgs: []string{"--load-balancer-pool", pool},
		Logger:     slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		return nil, err
	}
	// From here on, a failure or Ctrl-C tears down what was made; the
	// logs stay in the data dir.
	res, err := func() (*Result, error) {
		if err := pr.step("control plane and node agents started on "+nodes(cfg.Nodes), func(set func(string)) error {
			if err := l.Up(ctx); err != nil {
				return err
			}
			set("etcd, API server, scheduler, controllers, DNS on " + l.State().Nodes[0].Name)
			return nil
		}); err != nil {
			return nil, withLogs(err, l)
		}
		return finish(ctx, cfg, pr, l, true)
	}()
	if err != nil {
		fmt.Fprintf(cfg.Out, "Tearing down what was started (logs stay in %s) ...\n", dir)
		if derr := l.Down(context.WithoutCancel(ctx)); derr != nil {
			err = fmt.Errorf("%w\nTearing down also failed: %v (run skiff down --data-dir %s)", err, derr, dir)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("interrupted; nothing is left running (logs in %s)", dir)
		}
		return nil, err
	}
	printResult(cfg.Out, res, time.Since(started))
	return res, nil
}

// loadRunning loads the lab in dir: (nil, false) when there is none,
// (lab, true) when its server and API forwarder run, (lab, false) when it
// is stopped (e.g. after a reboot).
func loadRunning(ctx context.Context, dir string) (*lab.Lab, bool, error) {
	if _, err := os.Stat(filepath.Join(dir, lab.StateFile)); errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	l, err := lab.Load(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, false, err
	}
	st := l.State()
	if !st.Server.Alive() || !st.Forwarder.Alive() {
		return l, false, nil
	}
	c, err := l.Client()
	if err != nil {
		return l, false, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx); err != nil {
		return l, false, nil
	}
	return l, true, nil
}

// finish brings a started lab to a working demo app: nodes Ready, images,
// the app, its URL. fresh builds the images; a running cluster rebuilds
// them only when the app is not ready.
func finish(ctx context.Context, cfg Config, pr *progress, l *lab.Lab, fresh bool) (*Result, error) {
	st := l.State()
	if err := pr.step(nodes(len(st.Nodes))+" Ready", func(set func(string)) error {
		err := waitNodes(ctx, l, cfg.NodeTimeout)
		if err == nil {
			names := make([]string, 0, len(st.Nodes))
			for _, n := range st.Nodes {
				names = append(names, n.Name)
			}
			set(strings.Join(names, ", "))
		}
		return err
	}); err != nil {
		return nil, err
	}
	c, err := l.Client()
	if err != nil {
		return nil, err
	}
	ready := false
	if !fresh {
		if d, err := readDemo(ctx, c); err == nil && d.done() {
			ready = true
		}
	}
	if !ready {
		if err := pr.step("demo images built on every node", func(set func(string)) error {
			return buildImages(ctx, cfg, st, set)
		}); err != nil {
			return nil, err
		}
	}
	if err := pr.step("demo app deployed and ready", func(set func(string)) error {
		if err := deployDemo(ctx, c); err != nil {
			return err
		}
		return waitDemo(ctx, c, cfg.AppTimeout, set)
	}); err != nil {
		return nil, err
	}
	d, err := readDemo(ctx, c)
	if err != nil {
		return nil, err
	}
	var url string
	if err := pr.step("URL on 127.0.0.1 forwarded to the LoadBalancer IP", func(set func(string)) error {
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))
		addr, err := l.Forward(DemoForward, listen, net.JoinHostPort(d.LBIP, strconv.Itoa(demoPort)))
		if err != nil {
			return err
		}
		url = "http://" + addr
		set(url + " → " + d.LBIP + ":" + strconv.Itoa(demoPort))
		return waitURL(ctx, url, DemoReplicas, time.Minute)
	}); err != nil {
		return nil, err
	}
	pods, err := podsWide(ctx, c, DemoNamespace)
	if err != nil {
		return nil, err
	}
	return &Result{Command: cfg.Command, DataDir: st.Dir, Kubeconfig: st.Kubeconfig, URL: url, Nodes: len(st.Nodes), Pods: pods}, nil
}

// waitNodes waits for the lab's nodes to be Ready, failing early with
// containerd's own words when a node's containerd keeps exiting, and
// otherwise adding each node's last logged error to a failure.
func waitNodes(ctx context.Context, l *lab.Lab, timeout time.Duration) error {
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			if err := containerdFailing(l); err != nil {
				cancel(err)
				return
			}
		}
	}()
	err := l.WaitNodesReady(wctx, timeout)
	if err == nil || ctx.Err() != nil {
		return err
	}
	if cause := context.Cause(wctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	err = withLogs(err, l)
	for i, n := range l.State().Nodes {
		if line := lastErrorLine(l.AgentLog(i)); line != "" && !strings.Contains(err.Error(), line) {
			err = fmt.Errorf("%w\n%s's last error (%s):\n  %s", err, n.Name, l.AgentLog(i), line)
		}
	}
	return err
}

// containerdRestartsToFail is how many restarts of a node's containerd
// (the agent restarts it with back-off) make skiff up give up.
const containerdRestartsToFail = 3

// containerdFailing returns an error when a node's agent has restarted
// its containerd containerdRestartsToFail times, with the last line of
// containerd's log.
func containerdFailing(l *lab.Lab) error {
	for i, n := range l.State().Nodes {
		b, err := os.ReadFile(l.AgentLog(i))
		if i := bytes.LastIndex(b, []byte("\n===== ")); i >= 0 {
			b = b[i:] // this start's lines (the lab appends to the log)
		}
		if err != nil || bytes.Count(b, []byte("containerd exited; restarting")) < containerdRestartsToFail {
			continue
		}
		clog := filepath.Join(n.DataDir, "containerd", "containerd.log")
		return fmt.Errorf("containerd on node %s keeps failing to start; its last words (%s):\n  %s\n"+
			"Check that Debian's containerd works (containerd --version; make deps reinstalls what is missing)", n.Name, clog, lastLine(clog))
	}
	return nil
}

// lastLine returns the last non-empty line of the file at path.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// buildImages builds skiff.local/busybox and skiff.local/testserver and
// imports them into every node's containerd.
func buildImages(ctx context.Context, cfg Config, st lab.State, set func(string)) error {
	var ims containerd.Importers
	for _, n := range st.Nodes {
		ims = append(ims, containerd.Importer{Address: filepath.Join(n.DataDir, "containerd", "containerd.sock")})
	}
	set("building")
	res, err := image.BuildTestImages(ctx, image.Options{ModuleDir: cfg.ModuleDir, OutDir: filepath.Join(st.Dir, "images"), Importer: ims})
	if err != nil {
		return fmt.Errorf("building the demo images: %w", err)
	}
	names := make([]string, 0, len(res))
	for _, r := range res {
		names = append(names, r.Name)
	}
	set(strings.Join(names, ", "))
	return nil
}

// waitDemo waits until the demo app's replicas are available and its
// Service has a LoadBalancer IP.
func waitDemo(ctx context.Context, c kubernetes.Interface, timeout time.Duration, set func(string)) error {
	deadline := time.Now().Add(timeout)
	var last demoState
	var lastErr error
	for {
		d, err := readDemo(ctx, c)
		if err == nil {
			last, lastErr = d, nil
			set(d.String())
			if d.done() {
				return nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("the demo app is not ready after %s (%s)", timeout, last)
			if lastErr != nil {
				msg += ": " + lastErr.Error()
			}
			if len(last.Waiting) > 0 {
				msg += "; pods: " + strings.Join(last.Waiting, "; ")
			}
			if last.LBIP == "" {
				msg += "; the Service has no LoadBalancer IP: see kubectl describe service demo"
			}
			return errors.New(msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// waitURL waits until url has answered from want different replicas (the
// testserver names its pod in podName): the proxy of node 0 has programmed
// the LoadBalancer IP and every replica's endpoint, so what `skiff up`
// prints is true when it prints it. At most 1,000 requests, within timeout.
func waitURL(ctx context.Context, url string, want int, timeout time.Duration) error {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	seen := map[string]bool{}
	for i := 0; ; i++ {
		err := func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s", resp.Status)
			}
			var echo struct {
				PodName string `json:"podName"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
				return fmt.Errorf("reading the answer: %w", err)
			}
			seen[echo.PodName] = true
			return nil
		}()
		if err == nil && len(seen) >= want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answers came from %d of %d replicas", len(seen), want)
		}
		if time.Now().After(deadline) || i >= 1000 {
			return fmt.Errorf("%s does not answer from all %d replicas after %s: %w (the service proxy on node 0 forwards the LoadBalancer IP; see its agent log)", url, want, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// withLogs adds, for an agent or server that exited, the last error line
// of its log, which usually says why (e.g. containerd failing to start).
func withLogs(err error, l *lab.Lab) error {
	st := l.State()
	logs := []string{l.ServerLog()}
	for i := range st.Nodes {
		logs = append(logs, l.AgentLog(i))
	}
	for _, p := range logs {
		if !strings.Contains(err.Error(), p) {
			continue
		}
		if line := lastErrorLine(p); line != "" {
			return fmt.Errorf("%w\nlast error in %s:\n  %s", err, filepath.Base(p), line)
		}
	}
	return err
}

// lastErrorLine returns the last line of the log at path that logs an
// error ("" if none).
func lastErrorLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, "level=ERROR") || strings.HasPrefix(line, "skiff ") {
			last = line
		}
	}
	return last
}

// printResult prints the lines `skiff up`'s contract names and what to do
// next.
func printResult(w io.Writer, r *Result, took time.Duration) {
	state := "is up"
	if r.Reused {
		state = "is running"
	}
	fmt.Fprintf(w, `
skiff %s: %s, demo app ready (%s).

KUBECONFIG=%s
URL=%s

Point kubectl at it:
  export KUBECONFIG=%s

kubectl get pods -o wide:
%s
Next:
  curl %s        # answered by one of the 3 demo replicas (see podName)
  curl %s/page   # the page from ConfigMap demo-page
  kubectl apply -f your-app.yaml
  %s status%s   # components, nodes and the demo app
  %s down%s     # stop it all (--purge also removes %s)
`, state, nodes(r.Nodes), elapsed(took), r.Kubeconfig, r.URL, r.Kubeconfig, indent(r.Pods), r.URL, r.URL,
		r.Command, dirFlag(r.DataDir), r.Command, dirFlag(r.DataDir), r.DataDir)
	if _, err := exec.LookPath("kubectl"); err != nil {
		fmt.Fprintf(w, "\nkubectl is not on PATH: install a recent one (v1.27 or later) to use the cluster.\n")
	}
}

// nodes is "1 node" or "N nodes".
func nodes(n int) string {
	if n == 1 {
		return "1 node"
	}
	return strconv.Itoa(n) + " nodes"
}

// dirFlag is the --data-dir flag that names dir, "" for the default.
func dirFlag(dir string) string {
	if dir == DefaultDataDir {
		return ""
	}
	return " --data-dir " + dir
}

func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	return b.String()
}

// Down stops the cluster in dir and removes its namespaces, routes,
// nftables tables, mounts and processes; purge also removes dir. It
// reports whether there was a cluster.
func Down(ctx context.Context, dir string, purge bool, out io.Writer) (bool, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false, err
	}
	ctx = context.WithoutCancel(ctx) // a second Ctrl-C must not leave half of it
	found := false
	if _, err := os.Stat(filepath.Join(dir, lab.StateFile)); err == nil {
		found = true
		l, err := lab.Load(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			return true, err
		}
		pr := newProgress(out, time.Now)
		if err := pr.step("stopped the cluster in "+dir+" (processes, namespaces, routes, nftables tables, mounts)", func(func(string)) error {
			return l.Down(ctx)
		}); err != nil {
			return true, err
		}
	}
	if !purge {
		return found, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return found, nil
	}
	if !ours(dir) {
		return found, fmt.Errorf("%s does not look like a skiff up data dir (no %s or server/); remove it yourself if you mean it", dir, LogFile)
	}
	if err := os.RemoveAll(dir); err != nil {
		return found, fmt.Errorf("removing %s: %w", dir, err)
	}
	fmt.Fprintf(out, "  ✓ removed %s\n", dir)
	return found, nil
}

// ours reports whether dir holds what Up writes.
func ours(dir string) bool {
	for _, p := range []string{LogFile, "server", lab.StateFile} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return true
		}
	}
	return false
}
