// Package containerdtest runs a real containerd for a test: in a network
// namespace of the test's own, with skiff's pause and busybox images (and,
// when asked, the testserver) imported, torn down when the test ends.
package containerdtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/controller/controllertest"
	"github.com/skiff-sh/skiff/internal/image"
)

// Options are what a test wants beside containerd, pause and busybox.
type Options struct {
	// TestserverModule is the skiff module directory (relative to the
	// test's package, "../../..") to build the testserver image from;
	// empty means no testserver image.
	TestserverModule string
}

// Start runs containerd under dir (a directory of the test's own, from
// os.MkdirTemp: unix sockets below it must stay short) in a new network
// namespace named after dir, started with nsenter, and imports the images.
// It skips the test unless it can run real containers: it needs root and
// the packages hack/install-deps.sh installs. When the test ends every
// sandbox is stopped and removed, containerd stopped, what it left mounted
// below dir unmounted and the namespace deleted. It returns containerd and
// the namespace's path (/run/netns/NAME).
func Start(t *testing.T, dir string, opts Options) (*containerd.Containerd, string) {
	t.Helper()
	need(t, opts.TestserverModule != "")
	ns := netns(t, filepath.Base(dir))
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
	importImages(ctx, t, c.Endpoint(), dir, opts)
	return c, ns
}

// need skips the test unless root and every tool Start runs are there.
func need(t *testing.T, testserver bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd and create network namespaces")
	}
	bins := []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "ip", "nsenter", image.DefaultBusybox,
		filepath.Join(containerd.DefaultCNIBinDir, "bridge")}
	if testserver {
		bins = append(bins, "go")
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
}

// netns creates the network namespace containerd (and the pods) run in,
// so the pods' bridge and veths never touch the host's network.
func netns(t *testing.T, name string) string {
	t.Helper()
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

// importImages builds the pause and busybox images (and the testserver's)
// from the host's busybox and imports them into containerd.
func importImages(ctx context.Context, t *testing.T, endpoint, dir string, opts Options) {
	t.Helper()
	files, err := image.BusyboxFiles(ctx, image.DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	pause, err := image.PauseSpec(files)
	if err != nil {
		t.Fatal(err)
	}
	specs := []image.Spec{pause, image.BusyboxSpec(files)}
	if opts.TestserverModule != "" {
		bin, err := image.BuildTestserver(ctx, opts.TestserverModule, "")
		if err != nil {
			t.Fatal(err)
		}
		ts, err := image.TestserverSpec(files, bin)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, ts)
	}
	im := containerd.Importer{Address: endpoint}
	for _, spec := range specs {
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
}

// Conn is a gRPC connection to the CRI endpoint (unix://PATH), closed
// when the test ends.
func Conn(t testing.TB, endpoint string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// RuntimeClient is a CRI runtime client of endpoint (unix://PATH),
// closed when the test ends.
func RuntimeClient(t testing.TB, endpoint string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	return runtimeapi.NewRuntimeServiceClient(Conn(t, endpoint))
}

// removeSandboxes stops and removes every sandbox containerd still has,
// so no container, mount or network namespace outlives the test.
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

// unmountUnder unmounts, newest first, what containerd left mounted
// below dir.
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
