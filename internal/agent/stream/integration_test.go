package stream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/agent/stream"
	"github.com/skiff-sh/skiff/internal/agent/stream/streamtest"
	"github.com/skiff-sh/skiff/internal/containerd/containerdtest"
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
	kubectls := streamtest.Versions(t, "1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33")
	dir, err := os.MkdirTemp("", "skiff-stream-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctrd, ns := containerdtest.Start(t, dir, containerdtest.Options{TestserverModule: "../../.."})
	endpoint, cniConf := ctrd.Endpoint(), ctrd.CNIConfDir()

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
