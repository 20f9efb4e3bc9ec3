package stream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeCRI is a CRI runtime service with one pod "default/p" (uid u1) and
// its container "c" in two attempts; Exec, Attach and PortForward answer
// the URL of an upgrade echo server.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	streamURL string

	mu      sync.Mutex
	running bool // attempt 1 of c runs
	execReq *runtimeapi.ExecRequest
}

func (f *fakeCRI) ListPodSandbox(_ context.Context, r *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	sel := r.GetFilter().GetLabelSelector()
	if sel[labelPodNamespace] != "default" || sel[labelPodName] != "p" {
		return &runtimeapi.ListPodSandboxResponse{}, nil
	}
	return &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
		{Id: "old", CreatedAt: 1, State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY, Metadata: &runtimeapi.PodSandboxMetadata{Uid: "u0"}},
		{Id: "sb", CreatedAt: 2, State: runtimeapi.PodSandboxState_SANDBOX_READY, Metadata: &runtimeapi.PodSandboxMetadata{Uid: "u1"}},
	}}, nil
}

func (f *fakeCRI) ListContainers(_ context.Context, r *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	if r.GetFilter().GetPodSandboxId() != "sb" || r.GetFilter().GetLabelSelector()[labelContainerName] != "c" {
		return &runtimeapi.ListContainersResponse{}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	state := runtimeapi.ContainerState_CONTAINER_EXITED
	if f.running {
		state = runtimeapi.ContainerState_CONTAINER_RUNNING
	}
	return &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
		{Id: "c0", Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: 0}, State: runtimeapi.ContainerState_CONTAINER_EXITED},
		{Id: "c1", Metadata: &runtimeapi.ContainerMetadata{Name: "c", Attempt: 1}, State: state},
	}}, nil
}

func (f *fakeCRI) Exec(_ context.Context, r *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	f.mu.Lock()
	f.execReq = r
	f.mu.Unlock()
	return &runtimeapi.ExecResponse{Url: f.streamURL + "/exec/token"}, nil
}

func (f *fakeCRI) setRunning(b bool) {
	f.mu.Lock()
	f.running = b
	f.mu.Unlock()
}

// echoUpgrade switches protocols and echoes what it reads.
func echoUpgrade(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "SPDY/3.1" || r.URL.Path != "/exec/token" {
		http.Error(w, "want an SPDY upgrade of /exec/token", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n")
	_ = brw.Flush()
	_, _ = io.Copy(conn, brw)
}

// handlerServer serves the endpoint's handler over TLS to a client with the
// allowed common name, on a fake CRI and a pod log dir.
func handlerServer(t *testing.T) (*fakeCRI, string, string) {
	t.Helper()
	echo := httptest.NewServer(http.HandlerFunc(echoUpgrade))
	t.Cleanup(echo.Close)
	f := &fakeCRI{streamURL: echo.URL, running: true}
	sock := filepath.Join(t.TempDir(), "cri.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(g, f)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	logDir := t.TempDir()
	s, err := New(Config{Listen: "127.0.0.1:0", ClientCA: x509.NewCertPool(), Endpoint: "unix://" + sock, PodLogDir: logDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	// the handler behind a TLS-less server: authenticate as if the API
	// server's certificate had been verified
	h := s.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{}}}}
		r.TLS.VerifiedChains[0][0].Subject.CommonName = APIServerClientCN
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv.URL, logDir
}

func writeAttempt(t *testing.T, logDir string, attempt int, lines ...string) string {
	t.Helper()
	dir := filepath.Join(logDir, "default_p_u1", "c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, strconv.Itoa(attempt)+".log")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestContainerLogsHandler(t *testing.T) {
	f, url, logDir := handlerServer(t)
	writeAttempt(t, logDir, 0, line(1, "stdout", "F", "first run"))
	cur := writeAttempt(t, logDir, 1, line(2, "stdout", "F", "second run"), line(3, "stderr", "F", "oops"))
	for _, tc := range []struct {
		path     string
		wantCode int
		want     string
	}{
		{"/containerLogs/default/p/c", 200, "second run\noops\n"},
		{"/containerLogs/default/p/c?previous=true", 200, "first run\n"},
		{"/containerLogs/default/p/c?tailLines=1", 200, "oops\n"},
		{"/containerLogs/default/p/c?tailLines=-1", 400, "tailLines: must be greater than or equal to 0\n"},
		{"/containerLogs/default/p/other", 400, "container \"other\" in pod \"p\" is waiting to start - no logs yet\n"},
		{"/containerLogs/default/nope/c", 404, "pod \"default/nope\" not found\n"},
	} {
		code, body := get(t, url+tc.path)
		if code != tc.wantCode || body != tc.want {
			t.Errorf("%s: %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.want)
		}
	}
	// follow: a line appended arrives; the stream ends once the attempt
	// stops running
	resp, err := (&http.Client{}).Get(url + "/containerLogs/default/p/c?follow=true&tailLines=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fh, err := os.OpenFile(cur, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(line(4, "stdout", "F", "new")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(resp.Body)
	got := make(chan string, 1)
	go func() {
		l, _ := r.ReadString('\n')
		got <- l
	}()
	select {
	case l := <-got:
		if l != "new\n" {
			t.Errorf("follow: %q", l)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("follow: no new line")
	}
	f.setRunning(false)
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, r); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("follow did not end when the container stopped")
	}
}

func TestExecProxiesTheUpgrade(t *testing.T) {
	f, url, _ := handlerServer(t)
	host := strings.TrimPrefix(url, "http://")
	conn, err := net.DialTimeout("tcp", host, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	req := "POST /exec/default/p/c?command=sh&command=-c&command=true&input=1&output=1&tty=1 HTTP/1.1\r\nHost: " + host +
		"\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("X-Stream-Protocol-Version") != "v4.channel.k8s.io" {
		t.Fatalf("got %s %v", resp.Status, resp.Header)
	}
	if _, err := conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if l, err := br.ReadString('\n'); err != nil || l != "ping\n" {
		t.Errorf("through the upgraded connection: %q, %v", l, err)
	}
	f.mu.Lock()
	r := f.execReq
	f.mu.Unlock()
	if r == nil || r.ContainerId != "c1" || strings.Join(r.Cmd, " ") != "sh -c true" || !r.Stdin || !r.Stdout || r.Stderr || !r.Tty {
		t.Errorf("exec request %+v", r)
	}
	// a container that does not run: 400
	f.setRunning(false)
	code, body := get(t, url+"/exec/default/p/c?command=true&output=1")
	if code != http.StatusBadRequest || !strings.Contains(body, `container "c" in pod "p" is not running`) {
		t.Errorf("exec in a stopped container: %d %q", code, body)
	}
}
