package containerd_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
)

// needContainerd skips the test unless it can run containerd: it needs root
// and the containerd, ctr, runc and busybox-static packages
// (hack/install-deps.sh installs them).
func needContainerd(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	for _, bin := range []string{"containerd", "ctr", "runc", image.DefaultBusybox} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
}

func TestConfigKeepsEverythingUnderDir(t *testing.T) {
	c, err := containerd.New(containerd.Config{Dir: "/var/lib/x/containerd", SandboxImage: image.PauseName})
	if err != nil {
		t.Fatal(err)
	}
	conf := c.Config()
	for _, want := range []string{
		`root = "/var/lib/x/containerd/root"`, `state = "/var/lib/x/containerd/state"`,
		`address = "/var/lib/x/containerd/containerd.sock"`, `sandbox_image = "skiff.local/pause:latest"`,
		`bin_dir = "/usr/lib/cni"`, `conf_dir = "/var/lib/x/containerd/net.d"`, `Root = "/var/lib/x/containerd/runc"`,
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %s:\n%s", want, conf)
		}
	}
	if c.Endpoint() != "unix:///var/lib/x/containerd/containerd.sock" {
		t.Errorf("endpoint %s", c.Endpoint())
	}
}

func TestNewRejects(t *testing.T) {
	for name, cfg := range map[string]containerd.Config{
		"no dir":      {SandboxImage: "x"},
		"no image":    {Dir: "/tmp/x"},
		"long socket": {Dir: "/" + strings.Repeat("d", 120), SandboxImage: "x"},
	} {
		if _, err := containerd.New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRunAndImport(t *testing.T) {
	needContainerd(t)
	dir := t.TempDir()
	c, err := containerd.New(containerd.Config{Dir: filepath.Join(dir, "c"), SandboxImage: image.PauseName,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(60 * time.Second):
			t.Error("containerd did not stop")
		}
	}()
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("containerd: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("containerd not ready")
	}
	archive := filepath.Join(dir, "pause.oci.tar")
	if err := image.WritePause(ctx, "", archive); err != nil {
		t.Fatal(err)
	}
	im := containerd.Importer{Address: c.Endpoint()}
	if err := im.Import(ctx, image.PauseName, archive); err != nil {
		t.Fatal(err)
	}
	if err := im.Import(ctx, "skiff.local/other:latest", archive); err == nil {
		t.Error("importing under a name the archive does not hold succeeded")
	}
}

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "live.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	reg := filepath.Join(dir, "reg")
	unregister, err := containerd.Register(reg, "node-a", "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := containerd.Register(reg, "node-b", filepath.Join(dir, "dead.sock")); err != nil {
		t.Fatal(err)
	}
	got := containerd.Registered(reg)
	if len(got) != 1 || got["node-a"] != sock {
		t.Errorf("registered %v, want only node-a → %s", got, sock)
	}
	unregister()
	if got := containerd.Registered(reg); len(got) != 0 {
		t.Errorf("after unregister: %v", got)
	}
}
