package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
)

// Names of the images skiff builds for its tests.
const (
	BusyboxName    = "skiff.local/busybox:latest"
	TestserverName = "skiff.local/testserver:latest"
)

// DefaultBusybox is where Debian's busybox-static package installs busybox.
const DefaultBusybox = "/bin/busybox"

// defaultPath is the PATH of the images.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BusyboxFiles returns a minimal root filesystem around the static busybox
// binary at bin: /bin/busybox, a symlink to it for each applet it lists,
// /etc/passwd and /etc/group with root and nobody, and /tmp (1777).
func BusyboxFiles(ctx context.Context, bin string) ([]File, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading busybox (apt-get install busybox-static): %w", err)
	}
	if err := checkStaticELF(data); err != nil {
		return nil, fmt.Errorf("busybox %s: %w", bin, err)
	}
	out, err := exec.CommandContext(ctx, bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing busybox applets (%s --list-full): %w", bin, err)
	}
	files := []File{
		{Path: "/bin/busybox", Mode: 0o755, Data: data},
		{Path: "/tmp", Type: tar.TypeDir, Mode: 0o777 | os.ModeSticky},
		{Path: "/root", Type: tar.TypeDir, Mode: 0o700},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\n")},
	}
	seen := map[string]bool{"/bin/busybox": true}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || !strings.Contains(line, "/") {
			continue // e.g. "linuxrc", which belongs at / only on an initrd
		}
		p := path.Clean("/" + line)
		if seen[p] {
			continue
		}
		seen[p] = true
		files = append(files, File{Path: p, Type: tar.TypeSymlink, Mode: 0o777, Link: "/bin/busybox"})
	}
	if !seen["/bin/sh"] {
		return nil, fmt.Errorf("busybox %s has no sh applet", bin)
	}
	return files, nil
}

// BusyboxSpec is the spec of skiff.local/busybox:latest.
func BusyboxSpec(files []File) Spec {
	return Spec{
		Name:   BusyboxName,
		Files:  files,
		Config: Config{Cmd: []string{"sh"}, Env: []string{defaultPath}, WorkingDir: "/"},
	}
}

// TestserverSpec is the spec of skiff.local/testserver:latest: the busybox
// files plus the static test server binary as /testserver, its entrypoint.
func TestserverSpec(busybox []File, server []byte) (Spec, error) {
	if err := checkStaticELF(server); err != nil {
		return Spec{}, fmt.Errorf("testserver binary: %w", err)
	}
	files := append(append([]File(nil), busybox...), File{Path: "/testserver", Mode: 0o755, Data: server})
	return Spec{
		Name:  TestserverName,
		Files: files,
		Config: Config{
			Entrypoint:   []string{"/testserver"},
			Env:          []string{defaultPath, "PORT=8080"},
			WorkingDir:   "/",
			ExposedPorts: []string{"8080/tcp"},
		},
	}, nil
}

// checkStaticELF returns an error unless b is an ELF executable without a
// program interpreter (that is, statically linked).
func checkStaticELF(b []byte) error {
	f, err := parseELF(b)
	if err != nil {
		return err
	}
	if f.interp {
		return fmt.Errorf("dynamically linked (has an interpreter); build it with CGO_ENABLED=0")
	}
	return nil
}

// BuildTestserver builds the test server from the skiff module at moduleDir
// with CGO_ENABLED=0 and returns the binary.
func BuildTestserver(ctx context.Context, moduleDir, goarch string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "skiff-testserver-")
	if err != nil {
		return nil, fmt.Errorf("building testserver: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := tmp + "/testserver"
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./test/images/testserver")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building testserver (go build in %s): %w: %s", moduleDir, err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("building testserver: %w", err)
	}
	return b, nil
}

// PauseName is the sandbox ("pause") image skiff's containerd uses: it holds
// a pod's namespaces while its containers come and go.
const PauseName = "skiff.local/pause:latest"

// PauseSpec is the spec of skiff.local/pause:latest: only /bin/busybox from
// the busybox files, sleeping for good. As PID 1 of its namespace it
// ignores SIGTERM; containerd stops sandboxes with SIGKILL.
func PauseSpec(busybox []File) (Spec, error) {
	for _, f := range busybox {
		if f.Path == "/bin/busybox" {
			return Spec{
				Name:   PauseName,
				Files:  []File{f},
				Config: Config{Entrypoint: []string{"/bin/busybox", "sleep", "2147483647"}, WorkingDir: "/"},
			}, nil
		}
	}
	return Spec{}, fmt.Errorf("pause image: no /bin/busybox among the busybox files")
}

// WritePause builds skiff.local/pause:latest from the static busybox at bin
// (empty means DefaultBusybox) and writes it as an OCI archive to archive.
func WritePause(ctx context.Context, bin, archive string) error {
	if bin == "" {
		bin = DefaultBusybox
	}
	files, err := BusyboxFiles(ctx, bin)
	if err != nil {
		return err
	}
	spec, err := PauseSpec(files)
	if err != nil {
		return err
	}
	img, err := Build(spec)
	if err != nil {
		return err
	}
	return img.WriteArchiveFile(archive)
}
