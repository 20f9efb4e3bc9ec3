package cri_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/agent"
	"github.com/skiff-sh/skiff/internal/agent/cri"
	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/image"
)

// podCIDR is the test node's pod range. It lives only on the bridge in the
// test's own network namespace.
const podCIDR = "10.244.77.0/24"

// needCRI skips the test unless it can run real containers: it needs root
// and the packages hack/install-deps.sh installs.
func needCRI(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd and create network namespaces")
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "nsenter", image.DefaultBusybox,
		filepath.Join(containerd.DefaultCNIBinDir, "bridge")} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
}

// netns creates a network namespace for the test's containerd, so the
// pods' bridge and veths never touch the host's network.
func netns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("skiff-cri-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v: %s", err, out)
		}
	})
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return "/run/netns/" + name
}

// startContainerd runs containerd in ns and imports the pause and busybox
// images into it.
func startContainerd(t *testing.T, dir, ns string) *containerd.Containerd {
	t.Helper()
	c, err := containerd.New(containerd.Config{Dir: filepath.Join(dir, "containerd"), SandboxImage: image.PauseName,
		NetNS: ns, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cleanupPods(t, c.Endpoint())
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("containerd did not stop")
		}
		unmountUnder(t, dir)
		// containerd's parent cgroups: removed when empty, kept while
		// another containerd uses them
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io")
		for _, d := range dirs {
			_ = os.Remove(d)
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
	im := containerd.Importer{Address: c.Endpoint()}
	for _, spec := range []image.Spec{pause, image.BusyboxSpec(files)} {
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
	return c
}

func criClient(t *testing.T, endpoint string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// cleanupPods removes every sandbox containerd still has, so no container,
// mount or network namespace outlives the test.
func cleanupPods(t *testing.T, endpoint string) {
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
		t.Errorf("cleanup: list sandboxes: %v", err)
		return
	}
	for _, sb := range sbs.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("cleanup: stop sandbox %s: %v", sb.Id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("cleanup: remove sandbox %s: %v", sb.Id, err)
		}
	}
}

// unmountUnder unmounts what containerd left mounted below dir.
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			t.Logf("unmounting leftover %s", f[1])
			_ = exec.Command("umount", "-l", f[1]).Run()
		}
	}
}

func TestBusyboxPodRunsAsContainer(t *testing.T) {
	needCRI(t)
	dir, err := os.MkdirTemp("", "skiff-cri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := netns(t)
	ctrd := startContainerd(t, dir, ns)
	_, cs := controllertest.ControlPlane(t)
	ctx := context.Background()

	const nodeName = "cri-node"
	rt, err := cri.New(cri.Config{Endpoint: ctrd.Endpoint(), CNIConfDir: ctrd.CNIConfDir(),
		CNIDataDir: filepath.Join(dir, "cni"), PodLogDir: filepath.Join(dir, "pods"), HostIPs: []string{"127.0.0.1"}, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	capacity, err := agent.Resources("2", "2Gi", "10Gi", 10)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{NodeName: nodeName, Client: cs, Runtime: rt, Capacity: capacity, DataDir: dir,
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}, Logger: controllertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	actx, stop := context.WithCancel(ctx)
	agentDone := make(chan error, 1)
	go func() { agentDone <- a.Run(actx) }()
	t.Cleanup(func() {
		stop()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v", err)
		}
	})

	grace := int64(1)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: nodeName, TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{Name: "main", Image: image.BusyboxName, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "echo hello $(POD_NAME); sleep 3600"},
				Env:     []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}}},
	}
	created, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// the node gets its pod CIDR after it registered, as nodeipam gives it
	select {
	case <-a.Ready():
	case <-time.After(60 * time.Second):
		t.Fatal("node not registered")
	}
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, podCIDR, podCIDR)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, nodeName, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	var running *corev1.Pod
	controllertest.Eventually(t, "pod running with an IP", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "hello", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		running = p
		return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "", fmt.Sprintf("phase %s ip %q statuses %+v", p.Status.Phase, p.Status.PodIP, p.Status.ContainerStatuses)
	})
	ip, err := netip.ParseAddr(running.Status.PodIP)
	if err != nil || !netip.MustParsePrefix(podCIDR).Contains(ip) {
		t.Fatalf("pod IP %q is not in the node's pod CIDR %s", running.Status.PodIP, podCIDR)
	}
	st := running.Status.ContainerStatuses
	if len(st) != 1 || st[0].State.Running == nil || !strings.HasPrefix(st[0].ContainerID, "containerd://") || st[0].ImageID == "" {
		t.Fatalf("container status %+v", st)
	}
	id := strings.TrimPrefix(st[0].ContainerID, "containerd://")

	// the container really runs: ask it for its PID 1's command line (sh
	// execs the last command of -c)
	client := criClient(t, ctrd.Endpoint())
	out, err := client.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/1/cmdline"}, Timeout: 10})
	if err != nil {
		t.Fatal(err)
	}
	if string(out.Stdout) != "sleep\x003600\x00" || out.ExitCode != 0 {
		t.Errorf("exec cat /proc/1/cmdline: exit %d, stdout %q, stderr %q", out.ExitCode, out.Stdout, out.Stderr)
	}
	// its output reached the pod's log file
	logPath := filepath.Join(dir, "pods", "default_hello_"+string(created.UID), "main", "0.log")
	controllertest.Eventually(t, "hello in the container's log", func() (bool, string) {
		b, err := os.ReadFile(logPath)
		return strings.Contains(string(b), "stdout F hello hello"), fmt.Sprintf("%q %v", b, err)
	})

	if err := cs.CoreV1().Pods("default").Delete(ctx, "hello", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, "pod deleted", func() (bool, string) {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "hello", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	controllertest.Eventually(t, "sandbox and container removed", func() (bool, string) {
		sbs, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return false, err.Error()
		}
		ctrs, err := client.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		if err != nil {
			return false, err.Error()
		}
		return len(sbs.Items) == 0 && len(ctrs.Containers) == 0, fmt.Sprintf("%d sandboxes, %d containers", len(sbs.Items), len(ctrs.Containers))
	})
}
