package stream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/agent/stream"
	"github.com/skiff-sh/skiff/internal/agent/stream/streamtest"
	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/image"
	"github.com/skiff-sh/skiff/internal/pki"
	"github.com/skiff-sh/skiff/internal/server"
)

const (
	streamNode    = "stream-node"
	streamPodCIDR = "10.244.78.0/24"
)

// TestKubectlStreaming runs a real node (containerd in a network namespace
// of the test's, the agent and its streaming endpoint on the host's
// loopback) beside the API server, and drives logs, exec, attach,
// port-forward and cp with every stock kubectl from 1.27 to 1.33: SPDY up
// to 1.29; 1.30 uses WebSocket for exec and attach, 1.31+ for
// port-forward too, which the API server translates to SPDY (1.31+ are
// checked not to fall back).
func TestKubectlStreaming(t *testing.T) {
	if testing.Short() {
		t.Skip("runs containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd and create network namespaces")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ip", "nsenter", "go", image.DefaultBusybox,
		filepath.Join(containerd.DefaultCNIBinDir, "bridge")} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
	kubectls := streamtest.Versions(t, "1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33")
	dir, err := os.MkdirTemp("", "skiff-stream-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := newNetns(t)
	endpoint, cniConf := runContainerd(t, dir, ns)

	srv, err := server.New(server.Config{DataDir: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", Logger: controllertest.Logger(),
		DisableControllerManager: true, DisableScheduler: true})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "control plane", srv.Run)
	select {
	case <-srv.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("control plane not ready")
	}
	cs := kubernetes.NewForConfigOrDie(srv.RestConfig())
	ca, err := pki.EnsureCA(filepath.Join(dir, "server", "pki"))
	if err != nil {
		t.Fatal(err)
	}

	// the node: CRI runtime, agent, streaming endpoint
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	st, err := stream.New(stream.Config{Listener: ln, ClientCA: ca.Pool(), Endpoint: endpoint, PodLogDir: filepath.Join(dir, "pods"),
		Dial: stream.DialInNetNS(ns), Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "streaming endpoint", st.Run)
	rt, err := cri.New(cri.Config{Endpoint: endpoint, CNIConfDir: cniConf, CNIDataDir: filepath.Join(dir, "cni"),
		PodLogDir: filepath.Join(dir, "pods"), VolumeDir: filepath.Join(dir, "volumes"), HostIPs: []string{"127.0.0.1"},
		Client: cs, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	capacity, err := agent.Resources("2", "2Gi", "10Gi", 20)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{NodeName: streamNode, Client: cs, Runtime: rt, Capacity: capacity, DataDir: dir,
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		KubeletPort: int32(ln.Addr().(*net.TCPAddr).Port), Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "agent", a.Run)
	select {
	case <-a.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("agent not ready")
	}
	ctx := context.Background()
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, streamPodCIDR, streamPodCIDR)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, streamNode, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	// the pods every kubectl version works with
	ts := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ts"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{
		Name: "ts", Image: image.TestserverName, ImagePullPolicy: corev1.PullNever}}, TerminationGracePeriodSeconds: new(int64), AutomountServiceAccountToken: new(bool)}}
	pods := []*corev1.Pod{streamtest.LoggerPod("logger", image.BusyboxName), streamtest.RestartingPod("restarter", image.BusyboxName),
		streamtest.TwoContainerPod("two", image.BusyboxName), streamtest.StdinPod("stdin", image.BusyboxName), ts}
	for _, p := range pods {
		p.Spec.NodeName = streamNode
		if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"logger", "two", "stdin", "ts"} {
		controllertest.Eventually(t, p+" running", func() (bool, string) {
			got, err := cs.CoreV1().Pods("default").Get(ctx, p, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			return got.Status.Phase == corev1.PodRunning && len(got.Status.ContainerStatuses) > 0 &&
				got.Status.ContainerStatuses[0].Ready, fmt.Sprintf("%s %+v", got.Status.Phase, got.Status.ContainerStatuses)
		})
	}
	controllertest.Eventually(t, "logger has logged 3 lines", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(mustGlob(t, filepath.Join(dir, "pods", "default_logger_*")), "c", "0.log"))
		return strings.Count(string(b), "\n") >= 3, string(b)
	})

	for _, bin := range kubectls {
		k := streamtest.Kubectl{Bin: bin, Kubeconfig: srv.Kubeconfig, Namespace: "default"}
		t.Run(filepath.Base(bin), func(t *testing.T) {
			t.Run("Logs", func(t *testing.T) { streamtest.CheckLogs(t, k, "logger") })
			t.Run("LogsSince", func(t *testing.T) { streamtest.CheckLogsSinceRecent(t, k, "logger") })
			t.Run("MultiContainer", func(t *testing.T) { streamtest.CheckMultiContainer(t, k, "two") })
			t.Run("Exec", func(t *testing.T) { streamtest.CheckExec(t, k, "logger") })
			t.Run("ExecTTY", func(t *testing.T) { streamtest.CheckExecTTY(t, k, "logger") })
			t.Run("Attach", func(t *testing.T) { streamtest.CheckAttach(t, k, "logger") })
			t.Run("AttachStdin", func(t *testing.T) { streamtest.CheckAttachStdin(t, k, "stdin") })
			t.Run("PortForward", func(t *testing.T) { streamtest.CheckPortForward(t, k, "ts", 8080, "/healthz") })
			t.Run("Cp", func(t *testing.T) { streamtest.CheckCp(t, k, "logger") })
			switch v := strings.TrimPrefix(filepath.Base(bin), "kubectl."); {
			case v == "1.30":
				t.Run("WebSocket", func(t *testing.T) { streamtest.CheckNoFallback(t, k, "logger", "", 0) })
			case v > "1.30":
				t.Run("WebSocket", func(t *testing.T) { streamtest.CheckNoFallback(t, k, "logger", "ts", 8080) })
			}
		})
	}
	controllertest.Eventually(t, "restarter restarted", func() (bool, string) {
		got, err := cs.CoreV1().Pods("default").Get(ctx, "restarter", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		cst := got.Status.ContainerStatuses
		return len(cst) == 1 && cst[0].RestartCount >= 1 && cst[0].LastTerminationState.Terminated != nil, fmt.Sprintf("%+v", cst)
	})
	for _, bin := range kubectls {
		k := streamtest.Kubectl{Bin: bin, Kubeconfig: srv.Kubeconfig, Namespace: "default"}
		t.Run(filepath.Base(bin)+"/Previous", func(t *testing.T) { streamtest.CheckPrevious(t, k, "restarter") })
	}
	// errors as upstream's: unknown pod, a pod on no node
	k := streamtest.Kubectl{Bin: kubectls[len(kubectls)-1], Kubeconfig: srv.Kubeconfig, Namespace: "default"}
	if _, errOut, err := k.Run(nil, "logs", "nope"); err == nil || !strings.Contains(errOut, `pods "nope" not found`) {
		t.Errorf("logs of a missing pod: %v %q", err, errOut)
	}
	unscheduled := streamtest.LoggerPod("unscheduled", image.BusyboxName)
	if _, err := cs.CoreV1().Pods("default").Create(ctx, unscheduled, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, errOut, err := k.Run(nil, "exec", "unscheduled", "--", "true"); err == nil || !strings.Contains(errOut, "pod unscheduled does not have a host assigned") {
		t.Errorf("exec in an unscheduled pod: %v %q", err, errOut)
	}
}

func mustGlob(t *testing.T, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) != 1 {
		return pattern
	}
	return m[0]
}

// runUntilCleanup runs run until the test ends.
func runUntilCleanup(t *testing.T, what string, run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		case <-time.After(60 * time.Second):
			t.Errorf("%s did not stop", what)
		}
	})
}

// newNetns creates the network namespace containerd (and the pods) run in.
func newNetns(t *testing.T) string {
	name := fmt.Sprintf("skiff-stream-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return "/run/netns/" + name
}

// runContainerd runs containerd in ns (through nsenter) with the pause,
// busybox and testserver images; at cleanup every sandbox is removed first.
func runContainerd(t *testing.T, dir, ns string) (endpoint, cniConfDir string) {
	c, err := containerd.New(containerd.Config{Dir: filepath.Join(dir, "containerd"), SandboxImage: image.PauseName,
		NetNS: ns, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		removeSandboxes(t, c.Endpoint())
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("containerd did not stop")
		}
		b, _ := os.ReadFile("/proc/self/mounts")
		lines := strings.Split(string(b), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if f := strings.Fields(lines[i]); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
				_ = exec.Command("umount", "-l", f[1]).Run()
			}
		}
	})
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("containerd: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("containerd not ready")
	}
	files, err := image.BusyboxFiles(ctx, image.DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	pause, err := image.PauseSpec(files)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := image.BuildTestserver(ctx, "../../..", "")
	if err != nil {
		t.Fatal(err)
	}
	tsSpec, err := image.TestserverSpec(files, bin)
	if err != nil {
		t.Fatal(err)
	}
	im := containerd.Importer{Address: c.Endpoint()}
	for _, spec := range []image.Spec{pause, image.BusyboxSpec(files), tsSpec} {
		img, err := image.Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(dir, image.ArchiveFileName(spec.Name))
		if err := img.WriteArchiveFile(archive); err != nil {
			t.Fatal(err)
		}
		if err := im.Import(ctx, spec.Name, archive); err != nil {
			t.Fatal(err)
		}
	}
	return c.Endpoint(), c.CNIConfDir()
}

// removeSandboxes stops and removes every sandbox, so no container or
// mount outlives the test.
func removeSandboxes(t *testing.T, endpoint string) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, sb := range sbs.Items {
		_, _ = rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id})
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("cleanup: remove sandbox %s: %v", sb.Id, err)
		}
	}
}
