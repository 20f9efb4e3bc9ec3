package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// child is a process the benchmark started; its output goes to a log file.
type child struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts bin with args, its output appended to logPath. The
// child gets SIGKILL when this process dies, so that an aborted benchmark
// leaves no processes behind.
func startChild(name, logPath, bin string, args ...string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", name, err)
	}
	fmt.Fprintf(logf, "\n===== %s: %s %q =====\n", time.Now().Format(time.RFC3339Nano), bin, args)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to end.
func (c *child) kill() {
	if !c.exited() {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-c.done
}

// stop sends SIGTERM and SIGKILL if the process has not ended after
// grace; it returns once the process has ended.
func (c *child) stop(grace time.Duration) {
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.kill()
	}
}

// tail returns the last lines of the child's log, for errors.
func (c *child) tail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return ""
	}
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}

// waitReady polls until the server child's /readyz answers 200 through
// its admin kubeconfig, the child exits or ctx or the timeout ends.
func waitReady(ctx context.Context, c *child, kubeconfig, listen string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if client := clientFor(kubeconfig); client != nil {
			resp, err := client.Get("https://" + listen + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
			}
		}
		if c.exited() {
			return fmt.Errorf("%s exited before it was ready; log %s:\n%s", c.name, c.log, c.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; see %s", c.name, timeout, c.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startEtcd starts an external single-member etcd (Debian's etcd-server)
// on free loopback ports with its data in dir and waits until it is
// healthy. It returns the client URL.
func startEtcd(ctx context.Context, dir string) (*child, string, error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return nil, "", fmt.Errorf("no etcd on PATH (hack/install-deps.sh installs etcd-server): %w", err)
	}
	cport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pport, err := freePort()
	if err != nil {
		return nil, "", err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(cport)
	peer := "http://127.0.0.1:" + strconv.Itoa(pport)
	c, err := startChild("etcd", filepath.Join(dir, "etcd.log"), bin,
		"--name", "bench", "--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer, "--initial-cluster-state", "new",
		"--log-outputs", "stderr")
	if err != nil {
		return nil, "", err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get(client + "/health")
		if err == nil {
			ok := resp.StatusCode == http.StatusOK
			resp.Body.Close()
			if ok {
				return c, client, nil
			}
		}
		if c.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return nil, "", fmt.Errorf("etcd on %s did not become healthy:\n%s", client, c.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// selfBinary is the skiff binary the benchmarks start: bin, or this
// executable.
func selfBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the skiff binary: %w", err)
	}
	return exe, nil
}

// cpuSeconds returns the user and system CPU time pid has used.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// contain spaces: state is field 3, utime 14 and stime 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const clkTck = 100 // USER_HZ on Linux
	return (utime + stime) / clkTck, nil
}

// startServerChild starts `skiff server` (embedded etcd, no agent) with its
// data in dir/server on a free loopback port, with extra flags, and
// waits until it is ready. It returns the server and its admin kubeconfig.
func startServerChild(ctx context.Context, bin, dir string, extra ...string) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	serverDir := filepath.Join(dir, "server")
	kubeconfig := filepath.Join(serverDir, "admin.kubeconfig")
	args := append([]string{"server", "--data-dir", serverDir, "--listen", listen,
		"--disable-agent", "--cluster-dns-listen", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	srv, err := startChild("server", filepath.Join(dir, "server.log"), bin, args...)
	if err != nil {
		return nil, "", err
	}
	if err := waitReady(ctx, srv, kubeconfig, listen, 60*time.Second); err != nil {
		srv.stop(15 * time.Second)
		return nil, "", err
	}
	return srv, kubeconfig, nil
}

// benchClient is a client of kubeconfig with room for the benchmark's
// own requests (protobuf when asked).
func benchClient(kubeconfig string, protobuf bool) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	if protobuf {
		rc.ContentType = "application/vnd.kubernetes.protobuf"
	}
	return kubernetes.NewForConfig(rc)
}
