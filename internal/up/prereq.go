package up

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/skiff-sh/skiff/internal/containerd"
	"github.com/skiff-sh/skiff/internal/image"
)

// Problem is one missing prerequisite: what is wrong and what to do.
type Problem struct {
	What, Fix string
}

func (p Problem) String() string { return p.What + ": " + p.Fix }

// PrereqError lists the problems that keep `skiff up` from starting.
type PrereqError struct{ Problems []Problem }

func (e *PrereqError) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

// Host is what the prerequisite check reads of the machine (the real one
// in RealHost; tests pass fakes).
type Host struct {
	Euid     int
	LookPath func(file string) (string, error)
	Stat     func(name string) (os.FileInfo, error)
	Listen   func(network, address string) (net.Listener, error)
}

// RealHost is this machine.
func RealHost() Host {
	return Host{Euid: os.Geteuid(), LookPath: lookPath, Stat: os.Stat, Listen: net.Listen}
}

// lookPath finds file on PATH, or checks it when it is a path.
func lookPath(file string) (string, error) {
	if strings.Contains(file, "/") {
		st, err := os.Stat(file)
		if err != nil {
			return "", err
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not executable", file)
		}
		return file, nil
	}
	return exec.LookPath(file)
}

// requirement is a program skiff up runs and the Debian package that has it.
type requirement struct {
	program, pkg, why string
}

// packageFixes say what to do about a missing package that make deps
// does not install.
var packageFixes = map[string]string{
	"Go": "install Go 1.26 or later and put it on PATH (make deps does not)",
}

// requirements are the programs a cluster of real nodes needs. make deps
// (hack/install-deps.sh) installs their packages.
func requirements() []requirement {
	cni := func(p string) string { return filepath.Join(containerd.DefaultCNIBinDir, p) }
	return []requirement{
		{"containerd", "containerd", "every node runs its own containerd"},
		{"containerd-shim-runc-v2", "containerd", "containerd's runc shim"},
		{"ctr", "containerd", "imports the demo images"},
		{"runc", "runc", "runs the containers"},
		{cni("bridge"), "containernetworking-plugins", "the pod network's CNI plugins"},
		{cni("host-local"), "containernetworking-plugins", "the pod network's CNI plugins"},
		{cni("loopback"), "containernetworking-plugins", "the pod network's CNI plugins"},
		{cni("portmap"), "containernetworking-plugins", "the pod network's CNI plugins"},
		{"nft", "nftables", "the service proxy and pod network use nftables"},
		{"ip", "iproute2", "makes the nodes' network namespaces"},
		{"bridge", "iproute2", "the vxlan pod network's forwarding entries"},
		{"nsenter", "util-linux", "starts the nodes' processes in their namespaces"},
		{image.DefaultBusybox, "busybox-static", "the demo images are built from the static busybox"},
		{"go", "Go", "builds the demo app's test server from skiff's source"},
	}
}

// Check returns what keeps cfg's cluster from starting on h, one problem
// per cause, each with what to do; nil means none.
func Check(h Host, cfg Config) []Problem {
	var out []Problem
	if h.Euid != 0 {
		out = append(out, Problem{"skiff up needs root (it makes network namespaces and runs containerd)",
			"run it as root, e.g. sudo make up"})
	}
	if !cgroupsMounted(h) {
		out = append(out, Problem{"no cgroup filesystem at /sys/fs/cgroup (containers need cgroups)",
			"mount it (mount -t cgroup2 none /sys/fs/cgroup) or use a machine or VM with systemd"})
	}
	missing := map[string][]string{}
	var pkgs []string
	for _, r := range requirements() {
		if _, err := h.LookPath(r.program); err != nil {
			if missing[r.pkg] == nil {
				pkgs = append(pkgs, r.pkg)
			}
			missing[r.pkg] = append(missing[r.pkg], filepath.Base(r.program)+" ("+r.why+")")
		}
	}
	for _, pkg := range pkgs {
		fix := packageFixes[pkg]
		if fix == "" {
			fix = "run make deps (hack/install-deps.sh), or apt-get install " + pkg
		}
		out = append(out, Problem{fmt.Sprintf("%s is missing: %s", pkg, strings.Join(missing[pkg], ", ")), fix})
	}
	if cfg.ModuleDir == "" {
		out = append(out, Problem{"skiff's source is not found (the demo image's test server is built from it)",
			"run skiff up from skiff's source tree (make up does), or pass --module-dir"})
	}
	if cfg.Port != 0 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))
		if ln, err := h.Listen("tcp", addr); err != nil {
			out = append(out, Problem{fmt.Sprintf("port %d on 127.0.0.1 is in use (%v)", cfg.Port, unwrapAll(err)),
				fmt.Sprintf("stop what listens there (ss -ltnp 'sport = :%d'), or pass --port 0 for a free port", cfg.Port)})
		} else {
			_ = ln.Close()
		}
	}
	if _, err := h.Stat(filepath.Join("/run/netns", "skiff-"+cfg.Name+"-hub")); err == nil {
		out = append(out, Problem{fmt.Sprintf("network namespace skiff-%s-hub exists: a cluster named %q runs from another data dir", cfg.Name, cfg.Name),
			"stop it with skiff down --data-dir THAT_DIR, or pass another --name"})
	}
	return out
}

func cgroupsMounted(h Host) bool {
	for _, p := range []string{"/sys/fs/cgroup/cgroup.controllers", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified"} {
		if _, err := h.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// unwrapAll returns the innermost error (e.g. "address already in use").
func unwrapAll(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
