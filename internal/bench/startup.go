package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// StartupConfig configures the startup benchmark.
type StartupConfig struct {
	// Binary is the skiff binary to start (default: this executable).
	Binary string
	// Idle is how long the server idles before its RSS is read.
	Idle time.Duration
}

// Startup measures cold start to /readyz (fresh data dir), warm restart
// to /readyz (existing data dir), and idle RSS of `skiff server`.
func Startup(ctx context.Context, cfg StartupConfig) (Result, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return Result{}, err
		}
		cfg.Binary = exe
	}
	if cfg.Idle == 0 {
		cfg.Idle = 5 * time.Second
	}
	dir, err := os.MkdirTemp("", "skiff-bench-startup-")
	if err != nil {
		return Result{}, err
	}
	defer os.RemoveAll(dir)
	cold, _, err := startAndMeasure(ctx, cfg.Binary, dir, 0)
	if err != nil {
		return Result{}, fmt.Errorf("cold start: %w", err)
	}
	warm, rss, err := startAndMeasure(ctx, cfg.Binary, dir, cfg.Idle)
	if err != nil {
		return Result{}, fmt.Errorf("warm start: %w", err)
	}
	return Result{Scenario: "startup", Figures: map[string]Figure{
		"ready_ms":      {ms(cold), "ms"},
		"ready_warm_ms": {ms(warm), "ms"},
		"idle_rss_mib":  {rss, "MiB"},
	}, Notes: []string{fmt.Sprintf("ready_ms: process start to /readyz 200 on a fresh data dir (CA and certificates generated); ready_warm_ms: restart on that data dir; idle_rss_mib: VmRSS after %s idle", cfg.Idle)}}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAndMeasure starts `skiff server`, polls /readyz until it answers
// 200, optionally idles and reads RSS, then stops the server.
func startAndMeasure(ctx context.Context, bin, dir string, idle time.Duration) (time.Duration, float64, error) {
	port, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.CommandContext(ctx, bin, "server", "--data-dir", dir, "--listen", listen, "--disable-agent", "--cluster-dns-listen", "127.0.0.1:0", "--log-level", "warn")
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return 0, 0, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	kubeconfig := filepath.Join(dir, "admin.kubeconfig")
	var client *http.Client
	deadline := time.Now().Add(60 * time.Second)
	var ready time.Duration
	for {
		if time.Now().After(deadline) {
			return 0, 0, errors.New("server not ready after 60s; see " + logf.Name())
		}
		if client == nil {
			client = clientFor(kubeconfig)
		}
		if client != nil {
			resp, err := client.Get("https://" + listen + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ready = time.Since(start)
					break
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	if idle == 0 {
		return ready, 0, nil
	}
	time.Sleep(idle)
	rss, err := rssMiB(cmd.Process.Pid)
	return ready, rss, err
}

// clientFor returns an HTTP client with the kubeconfig's credentials, or
// nil while the kubeconfig does not exist yet.
func clientFor(path string) *http.Client {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil
	}
	tc, err := rest.TLSConfigFor(cfg)
	if err != nil || tc == nil {
		return nil
	}
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tc.Clone(), DisableKeepAlives: false,
		TLSHandshakeTimeout: 2 * time.Second}}
}

func rssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0, err
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
