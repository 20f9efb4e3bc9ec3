// Package streamtest checks kubectl's streaming commands (logs, exec,
// attach, port-forward, cp) against a cluster with real containers. The
// checks take a kubeconfig and pods, so that any test that runs real
// nodes (one node, or the multi-node lab) can run them.
package streamtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KubectlDir holds the stock kubectl versions (kubectl.1.27 … kubectl.1.33).
const KubectlDir = "/usr/lib/google-cloud-sdk/bin"

// Timeout bounds every kubectl command of the checks.
const Timeout = 60 * time.Second

// Kubectl runs one kubectl binary against a cluster.
type Kubectl struct {
	Bin, Kubeconfig, Namespace string
}

// Versions are the kubectl binaries of KubectlDir for the given versions
// ("1.27", "1.33"), skipping the test when one is missing.
func Versions(t testing.TB, versions ...string) []string {
	t.Helper()
	var out []string
	for _, v := range versions {
		p := filepath.Join(KubectlDir, "kubectl."+v)
		if _, err := os.Stat(p); err != nil {
			t.Skipf("needs %s: %v", p, err)
		}
		out = append(out, p)
	}
	return out
}

func (k Kubectl) cmd(ctx context.Context, args ...string) *exec.Cmd {
	all := append([]string{"--kubeconfig", k.Kubeconfig, "-n", k.Namespace}, args...)
	return exec.CommandContext(ctx, k.Bin, all...) //nolint:gosec // a test's kubectl
}

// Run runs kubectl with stdin (may be nil) and returns its output; err is
// an *exec.ExitError when kubectl exits non-zero.
func (k Kubectl) Run(stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := k.cmd(ctx, args...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// must runs kubectl and fails the test when it fails.
func (k Kubectl) must(t testing.TB, stdin io.Reader, args ...string) string {
	t.Helper()
	out, errOut, err := k.Run(stdin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(k.Bin), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// background starts kubectl and returns a reader of its stdout and a stop
// function that kills it and returns its stderr.
func (k Kubectl) background(t testing.TB, args ...string) (*bufio.Reader, func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	cmd := k.cmd(ctx, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	stopped := false
	stop := func() string {
		if !stopped {
			stopped = true
			cancel()
			_ = cmd.Wait()
		}
		return e.String()
	}
	t.Cleanup(func() { stop() })
	return bufio.NewReader(out), stop
}

// readUntil reads lines from r until one matches re (or the reader ends).
func readUntil(r *bufio.Reader, re *regexp.Regexp) (string, []string, error) {
	var seen []string
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			l = strings.TrimRight(l, "\r\n")
			seen = append(seen, l)
			if re.MatchString(l) {
				return l, seen, nil
			}
		}
		if err != nil {
			return "", seen, err
		}
	}
}

// LoggerPod is a pod whose container "c" (busybox) prints "line N" every
// second; the checks of logs, exec, attach and cp run against it.
func LoggerPod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 1; done"}}},
			TerminationGracePeriodSeconds: new(int64), AutomountServiceAccountToken: new(bool)},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
}

// RestartingPod is a pod whose container "c" prints "run" and exits 1 after
// two seconds, so that it restarts (for logs --previous).
func RestartingPod(name, image string) *corev1.Pod {
	return &corev1.Pod{
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sh", "-c", "echo run $(date +%s); sleep 2; exit 1"}}},
			TerminationGracePeriodSeconds: new(int64), AutomountServiceAccountToken: new(bool)},
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}
}

// TwoContainerPod has containers "a" and "b" (busybox, sleeping).
func TwoContainerPod(name, image string) *corev1.Pod {
	c := func(n string) corev1.Container {
		return corev1.Container{Name: n, Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
			Command: []string{"sh", "-c", "echo I am " + n + "; exec sleep 3600"}}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c("a"), c("b")}, TerminationGracePeriodSeconds: new(int64), AutomountServiceAccountToken: new(bool)}}
}

// CheckLogs checks kubectl logs on a LoggerPod: all lines, --tail,
// --since, -c, --timestamps and -f seeing a new line.
func CheckLogs(t *testing.T, k Kubectl, pod string) {
	out := k.must(t, nil, "logs", pod)
	if !strings.HasPrefix(out, "line 0\n") {
		t.Errorf("logs: %q, want it to start with line 0", out)
	}
	tail := k.must(t, nil, "logs", pod, "--tail=2")
	if lines := strings.Split(strings.TrimSuffix(tail, "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "line ") {
		t.Errorf("logs --tail=2: %q, want two lines", tail)
	}
	if out := k.must(t, nil, "logs", pod, "--since=1h", "-c", "c"); !strings.HasPrefix(out, "line 0\n") {
		t.Errorf("logs --since=1h -c c: %q", out)
	}
	if out := k.must(t, nil, "logs", pod, "--timestamps", "--tail=1"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line \d+\n$`).MatchString(out) {
		t.Errorf("logs --timestamps --tail=1: %q", out)
	}
	if out := k.must(t, nil, "logs", pod, "--limit-bytes=3"); out != "lin" {
		t.Errorf("logs --limit-bytes=3: %q", out)
	}
	if _, errOut, err := k.Run(nil, "logs", pod, "-c", "nope"); err == nil || !strings.Contains(errOut, "container nope is not valid for pod "+pod) {
		t.Errorf("logs -c nope: %v, %q", err, errOut)
	}
	// -f: a line newer than the last one logged so far arrives
	last := strings.Split(strings.TrimSuffix(tail, "\n"), "\n")[1]
	var n int
	if _, err := fmt.Sscanf(last, "line %d", &n); err != nil {
		t.Fatalf("last line %q: %v", last, err)
	}
	r, stop := k.background(t, "logs", "-f", pod, "--tail=1")
	for {
		l, seen, err := readUntil(r, regexp.MustCompile(`^line \d+$`))
		if err != nil {
			t.Errorf("logs -f: saw %q then %v; stderr %s", seen, err, stop())
			break
		}
		var m int
		if _, err := fmt.Sscanf(l, "line %d", &m); err == nil && m > n {
			break
		}
	}
	stop()
}

// CheckLogsSinceRecent checks that --since drops old lines of a
// LoggerPod that has run for a few seconds.
func CheckLogsSinceRecent(t *testing.T, k Kubectl, pod string) {
	out := k.must(t, nil, "logs", pod, "--since=2s")
	if strings.Contains(out, "line 0\n") {
		t.Errorf("logs --since=2s: %q has line 0", out)
	}
}

// CheckMultiContainer checks logs on a TwoContainerPod: -c picks one, and
// none is upstream's 400 naming the containers.
func CheckMultiContainer(t *testing.T, k Kubectl, pod string) {
	if out := k.must(t, nil, "logs", pod, "-c", "b"); out != "I am b\n" {
		t.Errorf("logs -c b: %q", out)
	}
	_, errOut, err := k.Run(nil, "logs", pod)
	// kubectl picks the default container itself when the pod has the
	// kubectl.kubernetes.io/default-container annotation; it has none, so
	// the request names none: the server's 400 (kubectl 1.27+ print it)
	if err == nil && !strings.Contains(errOut, "Defaulted container") {
		t.Errorf("logs without -c on two containers succeeded")
	}
	if err != nil && !strings.Contains(errOut, "a container name must be specified for pod "+pod+", choose one of: [a b]") {
		t.Errorf("logs without -c: %q", errOut)
	}
}

// CheckPrevious checks logs --previous on a RestartingPod that has
// restarted at least once.
func CheckPrevious(t *testing.T, k Kubectl, pod string) {
	out := k.must(t, nil, "logs", pod, "--previous")
	if !regexp.MustCompile(`^run \d+\n$`).MatchString(out) {
		t.Errorf("logs --previous: %q", out)
	}
}

// CheckExec checks exec without a terminal: output, stderr and exit code,
// and stdin with -i.
func CheckExec(t *testing.T, k Kubectl, pod string) {
	out, errOut, err := k.Run(nil, "exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exec exit 3: err %v (stderr %q), want exit code 3", err, errOut)
	}
	if out != "out\n" || !strings.Contains(errOut, "err\n") {
		t.Errorf("exec: stdout %q stderr %q", out, errOut)
	}
	if out := k.must(t, strings.NewReader("hello\nworld\n"), "exec", "-i", pod, "--", "cat"); out != "hello\nworld\n" {
		t.Errorf("exec -i cat: %q", out)
	}
	if _, errOut, err := k.Run(nil, "exec", pod, "-c", "nope", "--", "true"); err == nil || !strings.Contains(errOut, "container nope is not valid for pod "+pod) {
		t.Errorf("exec -c nope: %v, %q", err, errOut)
	}
}

// CheckExecTTY runs exec -it under script(1), which gives kubectl a
// terminal: the command sees a pty.
func CheckExecTTY(t *testing.T, k Kubectl, pod string) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("needs script (util-linux) for a terminal")
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	line := fmt.Sprintf("%s --kubeconfig %s -n %s exec -it %s -- sh -c 'tty; echo tty-ok; exit 4'", k.Bin, k.Kubeconfig, k.Namespace, pod)
	cmd := exec.CommandContext(ctx, "script", "-q", "-e", "-c", line, "/dev/null") //nolint:gosec // a test's command
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("exec -it exit 4: %v, output %q", err, out)
	}
	if !regexp.MustCompile(`/dev/pts/\d+\r?\n`).Match(out) || !bytes.Contains(out, []byte("tty-ok")) {
		t.Errorf("exec -it: output %q, want a /dev/pts terminal", out)
	}
}

// CheckAttach attaches to a LoggerPod and sees a line it prints.
func CheckAttach(t *testing.T, k Kubectl, pod string) {
	r, stop := k.background(t, "attach", pod, "-c", "c")
	if _, seen, err := readUntil(r, regexp.MustCompile(`^line \d+`)); err != nil {
		t.Errorf("attach: saw %q then %v; stderr %s", seen, err, stop())
	}
	stop()
}

// CheckPortForward forwards a local port to port of pod and GETs path
// through 127.0.0.1, expecting 200.
func CheckPortForward(t *testing.T, k Kubectl, pod string, port int, path string) {
	r, stop := k.background(t, "port-forward", "--address", "127.0.0.1", "pod/"+pod, fmt.Sprintf(":%d", port))
	l, seen, err := readUntil(r, regexp.MustCompile(`Forwarding from 127\.0\.0\.1:\d+`))
	if err != nil {
		t.Fatalf("port-forward: saw %q then %v; stderr %s", seen, err, stop())
	}
	local := regexp.MustCompile(`127\.0\.0\.1:\d+`).FindString(l)
	c := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < 2; i++ { // two connections through one forward
		resp, err := c.Get("http://" + local + path)
		if err != nil {
			t.Fatalf("GET through port-forward: %v; stderr %s", err, stop())
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s through port-forward: %s %q", path, resp.Status, body)
		}
	}
	stop()
}

// CheckCp copies a file into the pod and back out (tar through exec).
func CheckCp(t *testing.T, k Kubectl, pod string) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.txt")
	content := "copied by kubectl cp\n" + strings.Repeat("x", 100000) + "\n"
	if err := os.WriteFile(src, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// kubectl cp resolves local paths relative to its working directory;
	// absolute ones work too
	k.must(t, nil, "cp", src, k.Namespace+"/"+pod+":/tmp/in.txt", "-c", "c")
	if out := k.must(t, nil, "exec", pod, "--", "cat", "/tmp/in.txt"); out != content {
		t.Errorf("file copied in: %d bytes, want %d", len(out), len(content))
	}
	k.must(t, nil, "exec", pod, "--", "sh", "-c", "echo from the pod > /tmp/out.txt")
	dst := filepath.Join(dir, "out.txt")
	k.must(t, nil, "cp", k.Namespace+"/"+pod+":/tmp/out.txt", dst, "-c", "c")
	b, err := os.ReadFile(dst)
	if err != nil || string(b) != "from the pod\n" {
		t.Errorf("file copied out: %q, %v", b, err)
	}
}

// CheckNoFallback checks that kubectl 1.30+ ran exec over WebSocket and,
// with portForward, that 1.31+ forwarded over WebSocket, without falling
// back to SPDY: kubectl -v=4 logs a fallback.
func CheckNoFallback(t *testing.T, k Kubectl, pod, portForwardPod string, port int) {
	out, errOut, err := k.Run(nil, "-v=4", "exec", pod, "--", "echo", "ws")
	if err != nil || out != "ws\n" {
		t.Fatalf("exec -v=4: %v %q %s", err, out, errOut)
	}
	if strings.Contains(strings.ToLower(errOut), "fallback") {
		t.Errorf("exec fell back to SPDY: %s", errOut)
	}
	if portForwardPod == "" {
		return
	}
	r, stop := k.background(t, "-v=4", "port-forward", "--address", "127.0.0.1", "pod/"+portForwardPod, fmt.Sprintf(":%d", port))
	l, seen, err := readUntil(r, regexp.MustCompile(`Forwarding from 127\.0\.0\.1:\d+`))
	if err != nil {
		t.Fatalf("port-forward: saw %q then %v; stderr %s", seen, err, stop())
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + regexp.MustCompile(`127\.0\.0\.1:\d+`).FindString(l) + "/healthz")
	if err != nil {
		t.Fatalf("GET through port-forward: %v; stderr %s", err, stop())
	}
	resp.Body.Close()
	if errOut := stop(); strings.Contains(strings.ToLower(errOut), "fallback") {
		t.Errorf("port-forward fell back to SPDY: %s", errOut)
	}
}

// StdinPod has a container "c" with stdin open that answers every line it
// reads with "got LINE" (for attach -i).
func StdinPod(name, image string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image, ImagePullPolicy: corev1.PullIfNotPresent, Stdin: true,
			Command: []string{"sh", "-c", "while read l; do echo got $l; done"}}},
			TerminationGracePeriodSeconds: new(int64), AutomountServiceAccountToken: new(bool)}}
}

// CheckAttachStdin attaches to a StdinPod with -i, writes a line and sees
// the container's answer.
func CheckAttachStdin(t *testing.T, k Kubectl, pod string) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	cmd := k.cmd(ctx, "attach", "-i", pod, "-c", "c")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	word := fmt.Sprintf("hello-%d", time.Now().UnixNano())
	// kubectl may still be connecting: the line waits in the pipe
	if _, err := io.WriteString(in, word+"\n"); err != nil {
		t.Fatal(err)
	}
	if _, seen, err := readUntil(bufio.NewReader(out), regexp.MustCompile("^got "+word+"$")); err != nil {
		t.Errorf("attach -i: saw %q then %v; stderr %s", seen, err, e.String())
	}
}
