package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// start runs bin with args inside the network namespace netns (entered
// with nsenter --net, which keeps the mount namespace: `ip netns exec`
// remounts /sys, which breaks runc's cgroups), output appended to logPath.
func (l *Lab) start(netns, logPath string, args ...string) (Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Process{}, fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n===== %s: %s %q =====\n", time.Now().Format(time.RFC3339Nano), l.cfg.Binary, args)
	full := append([]string{"--net=" + netnsPath(netns), "--", l.cfg.Binary}, args...)
	cmd := exec.Command("nsenter", full...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = os.Environ()
	if l.cfg.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// dies with this process, so an aborted test leaves no server
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("lab: start %s: %w", args[0], err)
	}
	go func() { _ = cmd.Wait() }() // reap; the state's PID is how it is stopped
	p := Process{PID: cmd.Process.Pid, Log: logPath}
	p.StartTime, _ = startTime(p.PID)
	return p, nil
}

// startDetached runs the skiff binary with args in this namespace, in a
// session of its own, with extra files from fd 3 on.
func (l *Lab) startDetached(logPath string, extra []*os.File, args ...string) (Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Process{}, fmt.Errorf("lab: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(l.cfg.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Process{}, fmt.Errorf("lab: start %s: %w", args[0], err)
	}
	go func() { _ = cmd.Wait() }()
	p := Process{PID: cmd.Process.Pid, Log: logPath}
	p.StartTime, _ = startTime(p.PID)
	return p, nil
}

// startTime reads field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: too short", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether p is still the process the lab started (and not
// a zombie).
func alive(p Process) bool {
	if p.PID <= 0 {
		return false
	}
	st, err := startTime(p.PID)
	if err != nil || (p.StartTime != 0 && st != p.StartTime) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 && s[i+2] == 'Z' {
		return false
	}
	return true
}

// stopAll sends SIGTERM to ps and waits up to grace for them to exit,
// then kills the rest.
func stopAll(ps []Process, grace time.Duration) {
	for _, p := range ps {
		if alive(p) {
			_ = syscall.Kill(p.PID, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		left := 0
		for _, p := range ps {
			if alive(p) {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range ps {
		if alive(p) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
}

// nsInode is the inode of a network namespace file.
func nsInode(path string) (uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, false
	}
	return st.Ino, true
}

// processesIn returns the PIDs whose network namespace is one of inodes.
func processesIn(inodes map[uint64]bool) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if ino, ok := nsInode("/proc/" + e.Name() + "/ns/net"); ok && inodes[ino] {
			out = append(out, pid)
		}
	}
	return out
}

// cgroupDirs returns the cgroup directories (cgroup v1 and v2) that pid
// is in, below the root.
func cgroupDirs(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || f[2] == "/" || f[2] == "" {
			continue
		}
		ctrls := f[1]
		if ctrls == "" {
			out = append(out, filepath.Join("/sys/fs/cgroup", f[2]))
			out = append(out, filepath.Join("/sys/fs/cgroup/unified", f[2]))
			continue
		}
		ctrls = strings.TrimPrefix(ctrls, "name=")
		for _, c := range strings.Split(ctrls, ",") {
			out = append(out, filepath.Join("/sys/fs/cgroup", c, f[2]))
		}
		out = append(out, filepath.Join("/sys/fs/cgroup", ctrls, f[2]))
	}
	return out
}

// killIn kills every process in the network namespaces of inodes (the
// lab's nodes and pods: containerd, shims, containers), waits until they
// are gone (bounded) and removes the cgroups they leave empty. It returns
// how many it killed.
func killIn(inodes map[uint64]bool, grace time.Duration) int {
	pids := processesIn(inodes)
	if len(pids) == 0 {
		return 0
	}
	cgroups := map[string]bool{}
	for _, pid := range pids {
		for _, d := range cgroupDirs(pid) {
			// only the pods' cgroups (containerd's CRI parent); the
			// agent's and containerd's are shared with others
			if strings.Contains(d, "/k8s.io/") || strings.Contains(d, "/kubepods") {
				cgroups[d] = true
			}
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && len(ProcessesIn(inodes)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	dirs := make([]string, 0, len(cgroups))
	for d := range cgroups {
		dirs = append(dirs, d)
	}
	// deepest first; a directory still in use (shared parents such as
	// k8s.io) stays
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
	return len(pids)
}

// nsfsMountsUnder returns the namespace files bind-mounted below dir
// (pods' network namespaces under containerd's state dir).
func nsfsMountsUnder(dir string) []string {
	var out []string
	for _, m := range mountsUnder(dir) {
		if m.fstype == "nsfs" {
			out = append(out, m.path)
		}
	}
	return out
}

type mount struct{ path, fstype string }

// mountsUnder lists the mounts below dir, in mount order.
func mountsUnder(dir string) []mount {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []mount
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 {
			p := unescapeMount(f[1])
			if strings.HasPrefix(p, dir+"/") {
				out = append(out, mount{path: p, fstype: f[2]})
			}
		}
	}
	return out
}

// unescapeMount undoes /proc/mounts' octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount below dir, innermost first.
func unmountUnder(dir string) {
	ms := mountsUnder(dir)
	for i := len(ms) - 1; i >= 0; i-- {
		_ = syscall.Unmount(ms[i].path, syscall.MNT_DETACH)
	}
}
