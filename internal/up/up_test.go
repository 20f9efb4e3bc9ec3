package up

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/internal/lab"
)

// fakeHost is a machine with everything skiff up needs, which each test
// case takes something away from.
func fakeHost(missing map[string]bool, euid int, portTaken bool) Host {
	return Host{
		Euid: euid,
		LookPath: func(f string) (string, error) {
			if missing[filepath.Base(f)] {
				return "", errors.New("not found")
			}
			return f, nil
		},
		Stat: func(name string) (os.FileInfo, error) {
			if missing[name] {
				return nil, fs.ErrNotExist
			}
			if strings.HasPrefix(name, "/run/netns/") && !missing["netns-taken"] {
				return nil, fs.ErrNotExist
			}
			return nil, nil
		},
		Listen: func(network, addr string) (net.Listener, error) {
			if portTaken {
				return nil, &net.OpError{Op: "listen", Net: network, Err: errors.New("address already in use")}
			}
			return net.Listen(network, "127.0.0.1:0")
		},
	}
}

func TestCheck(t *testing.T) {
	cfg := Config{Name: "local", Port: 8080, ModuleDir: "/src/skiff"}
	noCgroups := map[string]bool{"/sys/fs/cgroup/cgroup.controllers": true, "/sys/fs/cgroup/memory": true, "/sys/fs/cgroup/unified": true}
	tests := []struct {
		name      string
		host      Host
		cfg       func(*Config)
		want      []string // one substring per problem, in order
		wantFixes []string
	}{
		{"all there", fakeHost(nil, 0, false), nil, nil, nil},
		{"not root", fakeHost(nil, 1000, false), nil, []string{"needs root"}, []string{"sudo make up"}},
		{"no cgroups", fakeHost(noCgroups, 0, false), nil, []string{"no cgroup filesystem"}, []string{"mount -t cgroup2"}},
		// a PATH without containerd: one problem for the package, whatever
		// of it is missing
		{"no containerd", fakeHost(map[string]bool{"containerd": true, "ctr": true, "containerd-shim-runc-v2": true}, 0, false), nil,
			[]string{"containerd is missing: containerd (every node runs its own containerd), containerd-shim-runc-v2"}, []string{"run make deps"}},
		{"no runc, CNI or nft", fakeHost(map[string]bool{"runc": true, "host-local": true, "nft": true}, 0, false), nil,
			[]string{"runc is missing", "containernetworking-plugins is missing: host-local", "nftables is missing: nft"},
			[]string{"apt-get install runc", "apt-get install containernetworking-plugins", "apt-get install nftables"}},
		{"no busybox", fakeHost(map[string]bool{"busybox": true}, 0, false), nil, []string{"busybox-static is missing"}, []string{"make deps"}},
		{"no go", fakeHost(map[string]bool{"go": true}, 0, false), nil, []string{"Go is missing: go"}, []string{"install Go 1.26"}},
		{"port in use", fakeHost(nil, 0, true), nil, []string{"port 8080 on 127.0.0.1 is in use (address already in use)"}, []string{"--port 0"}},
		{"port 0 is never in use", fakeHost(nil, 0, true), func(c *Config) { c.Port = 0 }, nil, nil},
		{"no source", fakeHost(nil, 0, false), func(c *Config) { c.ModuleDir = "" }, []string{"skiff's source is not found"}, []string{"--module-dir"}},
		{"namespace of another cluster", fakeHost(map[string]bool{"netns-taken": true}, 0, false), nil,
			[]string{"network namespace skiff-local-hub exists"}, []string{"skiff down --data-dir"}},
		{"several at once", fakeHost(map[string]bool{"containerd": true}, 1000, true), nil,
			[]string{"needs root", "containerd is missing", "port 8080"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cfg
			if tt.cfg != nil {
				tt.cfg(&c)
			}
			got := Check(tt.host, c)
			if len(got) != len(tt.want) {
				t.Fatalf("problems %q, want %d: %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].What, w) {
					t.Errorf("problem %d: %q, want it to say %q", i, got[i].What, w)
				}
				if got[i].Fix == "" {
					t.Errorf("problem %d: %q says nothing to do", i, got[i].What)
				}
				if i < len(tt.wantFixes) && !strings.Contains(got[i].Fix, tt.wantFixes[i]) {
					t.Errorf("problem %d: fix %q, want it to say %q", i, got[i].Fix, tt.wantFixes[i])
				}
			}
		})
	}
}

func TestCheckRealPathWithoutContainerd(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // an empty PATH: nothing of containerd
	got := Check(RealHost(), Config{Name: "local", ModuleDir: "/src"})
	var msgs []string
	for _, p := range got {
		msgs = append(msgs, p.String())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{"containerd is missing", "runc is missing", "run make deps"} {
		if !strings.Contains(all, want) {
			t.Errorf("problems:\n%s\nwant them to say %q", all, want)
		}
	}
	err := (&PrereqError{Problems: got}).Error()
	if strings.Count(err, "\n") != len(got)-1 {
		t.Errorf("want one line per problem:\n%s", err)
	}
}

func TestLBPool(t *testing.T) {
	tests := []struct{ subnet, want string }{
		{"172.31.0.0/24", "172.31.0.240-172.31.0.254"},
		{"10.9.0.0/16", "10.9.255.240-10.9.255.254"},
		{"172.31.0.5/24", "172.31.0.240-172.31.0.254"},
	}
	for _, tt := range tests {
		got, err := lbPool(tt.subnet)
		if err != nil || got != tt.want {
			t.Errorf("lbPool(%s) = %q, %v; want %q", tt.subnet, got, err, tt.want)
		}
	}
	if _, err := lbPool("fd00::/64"); err == nil {
		t.Error("lbPool accepted IPv6")
	}
}

func TestFormatTable(t *testing.T) {
	tab := &metav1.Table{
		ColumnDefinitions: []metav1.TableColumnDefinition{{Name: "Name"}, {Name: "Ready"}, {Name: "Restarts"}, {Name: "Nominated Node"}},
		Rows: []metav1.TableRow{
			{Cells: []any{"demo-a", "1/1", float64(0), nil}},
			{Cells: []any{"demo-long-name", "0/1", float64(12), ""}},
		},
	}
	want := "NAME             READY   RESTARTS   NOMINATED NODE\n" +
		"demo-a           1/1     0          <none>\n" +
		"demo-long-name   0/1     12         <none>\n"
	if got := formatTable(tab); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := formatTable(&metav1.Table{}); got != "No resources found.\n" {
		t.Errorf("empty: %q", got)
	}
}

func TestPodWaiting(t *testing.T) {
	ready := corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	tests := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"ready", corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{ready}}}, ""},
		{"unscheduled", corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Message: "0/3 nodes are available"}}}},
			"not scheduled: 0/3 nodes are available"},
		{"image missing", corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull", Message: "image not present"}}}}}},
			"ErrImageNeverPull image not present"},
		{"crashed", corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}, Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{
			{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Reason: "Error"}}}}}},
			"exited with 2 (Error)"},
		{"starting", corev1.Pod{Spec: corev1.PodSpec{NodeName: "n"}, Status: corev1.PodStatus{Phase: corev1.PodPending}}, "Pending on n"},
	}
	for _, tt := range tests {
		if got := podWaiting(&tt.pod); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestDemoObjects(t *testing.T) {
	cm, dep, svc := demoObjects()
	if *dep.Spec.Replicas != DemoReplicas || svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		t.Errorf("replicas %d, service type %s", *dep.Spec.Replicas, svc.Spec.Type)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.ImagePullPolicy != corev1.PullNever || c.Image != demoImage {
		t.Errorf("container %s %s: the image is imported, never pulled", c.Image, c.ImagePullPolicy)
	}
	vol := dep.Spec.Template.Spec.Volumes[0]
	if vol.ConfigMap == nil || vol.ConfigMap.Name != cm.Name || cm.Data["index.html"] == "" {
		t.Errorf("the page volume %+v does not mount ConfigMap %s", vol, cm.Name)
	}
	var page string
	for _, e := range c.Env {
		if e.Name == "PAGE_FILE" {
			page = e.Value
		}
	}
	if page != c.VolumeMounts[0].MountPath+"/index.html" {
		t.Errorf("PAGE_FILE %q is not the mounted page", page)
	}
	for _, o := range []runtime.Object{cm, dep, svc} {
		if m, _ := o.(metav1.Object); m.GetNamespace() != DemoNamespace || m.GetLabels()["app"] != DemoName {
			t.Errorf("%T: namespace %q labels %v", o, m.GetNamespace(), m.GetLabels())
		}
	}
}

func TestProgressPlain(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	p := newProgress(&b, func() time.Time { return now })
	_ = p.step("nodes Ready", func(set func(string)) error {
		now = now.Add(1500 * time.Millisecond)
		set("a, b")
		return nil
	})
	err := p.step("demo app", func(func(string)) error {
		now = now.Add(75 * time.Second)
		return errors.New("boom")
	})
	want := "  … nodes Ready\n  ✓ nodes Ready (1.5s): a, b\n  … demo app\n  ✗ demo app (1m15s)\n"
	if err == nil || b.String() != want {
		t.Errorf("err %v, output\n%s\nwant\n%s", err, b.String(), want)
	}
}

func TestDownPurge(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	// nothing there: not found, nothing to do
	if found, err := Down(ctx, filepath.Join(t.TempDir(), "none"), true, &out); found || err != nil {
		t.Errorf("missing dir: %v, %v", found, err)
	}
	// a directory skiff up did not make is never removed
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "precious"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Down(ctx, foreign, true, &out); err == nil {
		t.Error("purged a directory that is not skiff up's")
	}
	if _, err := os.Stat(filepath.Join(foreign, "precious")); err != nil {
		t.Errorf("foreign file gone: %v", err)
	}
	// a stopped cluster's directory (logs, data) is removed
	ours := t.TempDir()
	if err := os.WriteFile(filepath.Join(ours, LogFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Down(ctx, ours, true, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ours); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still there: %v", ours, err)
	}
}

func TestStatusWithoutCluster(t *testing.T) {
	var out bytes.Buffer
	err := Status(context.Background(), t.TempDir(), &out)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(out.String(), "skiff up --data-dir") {
		t.Errorf("err %v, output %q", err, out.String())
	}
}

// TestRequirementsCoverLab checks that the prerequisite check names every
// program the lab needs (lab.Deps), each with its Debian package.
func TestRequirementsCoverLab(t *testing.T) {
	have := map[string]bool{}
	for _, r := range requirements() {
		if r.pkg == "" || r.why == "" {
			t.Errorf("%s: no package or reason", r.program)
		}
		have[r.program] = true
	}
	for _, d := range lab.Deps {
		if !have[d] {
			t.Errorf("the lab needs %s, which Check does not look for", d)
		}
	}
}

// TestContainerdFailing checks that a node whose agent restarted its
// containerd three times in this start is reported with containerd's last
// log line, and that restarts of an earlier start (the log is appended
// to) do not count.
func TestContainerdFailing(t *testing.T) {
	dir := t.TempDir()
	l, err := lab.New(lab.Config{Name: "t", Dir: dir, Binary: "/bin/true", Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	n := l.State().Nodes[0]
	if err := os.MkdirAll(filepath.Join(n.DataDir, "containerd"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.DataDir, "containerd", "containerd.log"), []byte("starting\ncontainerd: bad config\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	restart := "level=ERROR msg=\"containerd exited; restarting\"\n"
	tests := []struct {
		name, log string
		failing   bool
	}{
		{"healthy", "\n===== start =====\nlevel=INFO msg=\"containerd started\"\n", false},
		{"two restarts", "\n===== start =====\n" + restart + restart, false},
		{"three restarts", "\n===== start =====\n" + restart + restart + restart, true},
		{"restarts of an earlier start", "\n===== old =====\n" + restart + restart + restart + "\n===== start =====\n" + restart, false},
	}
	for _, tt := range tests {
		if err := os.WriteFile(l.AgentLog(0), []byte(tt.log), 0o600); err != nil {
			t.Fatal(err)
		}
		err := containerdFailing(l)
		if (err != nil) != tt.failing {
			t.Errorf("%s: %v, want failing %v", tt.name, err, tt.failing)
		}
		if err != nil && !strings.Contains(err.Error(), "containerd: bad config") {
			t.Errorf("%s: %v does not quote containerd's log", tt.name, err)
		}
	}
}

// TestProgressTerminal checks the redrawn line on a terminal: cut to fit
// while it runs (a wrapped line cannot be redrawn), whole at the end.
func TestProgressTerminal(t *testing.T) {
	var b bytes.Buffer
	now := time.Unix(0, 0)
	p := newProgress(&b, func() time.Time { return now })
	p.tty = true
	long := strings.Repeat("x", 100)
	_ = p.step(long, func(func(string)) error {
		p.draw("…")
		return nil
	})
	frames := strings.Split(b.String(), "\r\033[K")
	last := strings.TrimSuffix(frames[len(frames)-1], "\n")
	for _, f := range frames[1 : len(frames)-1] {
		if n := len([]rune(f)); n > redrawWidth {
			t.Errorf("a redrawn frame is %d runes wide: %q", n, f)
		}
	}
	if !strings.HasPrefix(last, "  ✓ "+long) || !strings.HasSuffix(b.String(), "\n") {
		t.Errorf("final line %q", last)
	}
}
