package framework

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Bounds of the harness's waits; generous, because the machine is shared.
const (
	readyTimeout = 90 * time.Second
	stopGrace    = 20 * time.Second
	logTailBytes = 64 << 10
)

// ServerOptions configures one `skiff server`.
type ServerOptions struct {
	// EtcdEndpoints, when set, selects an external etcd (--etcd-endpoints).
	EtcdEndpoints []string
	// ExtraArgs are appended to the server's command line.
	ExtraArgs []string
}

// Env is one test run's environment: the binary under test and the
// kubectl binaries to drive it with.
type Env struct {
	// Binary is the skiff binary.
	Binary string
	// WorkDir holds what the run's tests share (the test images); it
	// is removed when the run ends.
	WorkDir string

	images    sync.Once
	imagesDir string
	imagesErr error
}

// Server is a running `skiff server` with its own data dir and port.
type Server struct {
	env     *Env
	opts    ServerOptions
	t       testing.TB
	dataDir string
	home    string
	logPath string
	addr    string

	mu   sync.Mutex
	proc *process
}

// StartServer starts `skiff server` in a fresh data dir on a free loopback
// port, waits for /readyz and stops the server when the test ends. The
// server's log is printed if the test failed.
func (e *Env) StartServer(t testing.TB, opts ServerOptions) *Server {
	t.Helper()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	s := &Server{env: e, opts: opts, t: t,
		dataDir: filepath.Join(root, "data"),
		home:    filepath.Join(root, "home"),
		logPath: filepath.Join(root, "server.log"),
		addr:    "127.0.0.1:" + strconv.Itoa(port)}
	if err := os.MkdirAll(s.home, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		if p != nil && p.stop(stopGrace) {
			t.Errorf("skiff server did not stop within %s of SIGTERM; sent SIGQUIT (goroutine dump in its log) and killed it", stopGrace)
		}
		if t.Failed() {
			t.Logf("skiff server log (kept as %s):\n%s", keepLog(t, s.logPath, "server"), tail(s.logPath, logTailBytes))
		}
	})
	s.start(t)
	return s
}

func (s *Server) args() []string {
	// Port 0: several servers of one run must not compete for the
	// cluster DNS default port.
	args := []string{"server", "--data-dir", s.dataDir, "--listen", s.addr, "--disable-agent", "--cluster-dns-listen", "127.0.0.1:0"}
	if len(s.opts.EtcdEndpoints) > 0 {
		args = append(args, "--etcd-endpoints", strings.Join(s.opts.EtcdEndpoints, ","))
	}
	return append(args, s.opts.ExtraArgs...)
}

// start launches the server process and waits until it is ready.
func (s *Server) start(t testing.TB) {
	t.Helper()
	p, err := startProcess(s.logPath, []string{"HOME=" + s.home}, s.env.Binary, s.args()...)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	if err := s.waitReady(p); err != nil {
		t.Fatalf("skiff server on %s: %v", s.addr, err)
	}
}

// waitReady polls /readyz with the admin credentials.
func (s *Server) waitReady(p *process) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			return fmt.Errorf("exited before it was ready: %v", p.err)
		}
		last = s.readyz()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s: %v", readyTimeout, last)
}

func (s *Server) readyz() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	cfg.Timeout = 5 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("http client: %w", err)
	}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(cfg.Host + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// Restart stops the server with SIGTERM (SIGKILL after a bound) and starts
// it again on the same data dir and port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p.stop(stopGrace) {
		t.Errorf("skiff server did not stop within %s of SIGTERM; sent SIGQUIT (goroutine dump in its log) and killed it", stopGrace)
	}
	s.start(t)
}

// Kill stops the server with SIGKILL, without a chance to flush anything.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	p.kill()
}

// Start starts a stopped (killed) server again on the same data dir and port.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil && !p.exited() {
		t.Fatal("Start: the server is still running")
	}
	s.start(t)
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the server's base URL.
func (s *Server) URL() string { return "https://" + s.addr }

// DataDir is the server's data dir.
func (s *Server) DataDir() string { return s.dataDir }

// Home is a HOME directory private to this server's clients.
func (s *Server) Home() string { return s.home }

// Kubeconfig is the admin kubeconfig the server wrote.
func (s *Server) Kubeconfig() string { return filepath.Join(s.dataDir, "admin.kubeconfig") }

// RestConfig returns an admin client configuration.
func (s *Server) RestConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig())
	if err != nil {
		t.Fatalf("load %s: %v", s.Kubeconfig(), err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	// client-go's typed clients send protobuf by default; the tests choose
	// the encoding explicitly (JSON here, protobuf in TestProtobuf).
	cfg.ContentType = "application/json"
	cfg.AcceptContentTypes = "application/json"
	return cfg
}

// Clientset returns an admin clientset.
func (s *Server) Clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.RestConfig(t))
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return cs
}

// HTTPClient returns an HTTP client that presents the admin certificate.
func (s *Server) HTTPClient(t testing.TB) *http.Client {
	t.Helper()
	hc, err := rest.HTTPClientFor(s.RestConfig(t))
	if err != nil {
		t.Fatalf("http client: %v", err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// Skiff runs the skiff binary with args (e.g. "token", "create") and
// returns its result.
func (s *Server) Skiff(ctx context.Context, args ...string) Result {
	return run(ctx, s.env.Binary, nil, "", []string{"HOME=" + s.home}, args...)
}
