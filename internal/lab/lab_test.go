package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/proxy/netns"
)

func TestNewChecksConfig(t *testing.T) {
	dir := t.TempDir()
	ok := Config{Name: "t1", Dir: dir, Binary: "/bin/true"}
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"bad name", func(c *Config) { c.Name = "Has_Caps" }},
		{"long name", func(c *Config) { c.Name = strings.Repeat("a", 21) }},
		{"no dir", func(c *Config) { c.Dir = "" }},
		{"no binary", func(c *Config) { c.Binary = "" }},
		{"IPv6 subnet", func(c *Config) { c.Subnet = "fd00::/64" }},
		{"small subnet", func(c *Config) { c.Subnet = "172.31.0.0/25" }},
		{"cluster overlaps the lab", func(c *Config) { c.ClusterCIDR = "172.31.0.0/16" }},
		{"listen off loopback", func(c *Config) { c.Listen = "0.0.0.0:6443" }},
		{"too many nodes", func(c *Config) { c.Nodes = 201 }},
		{"unknown pod network", func(c *Config) { c.PodNetwork = "flannel" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			if _, err := New(cfg); err == nil {
				t.Errorf("New accepted %+v", cfg)
			}
		})
	}
	cfg := ok
	cfg.Nodes = 3
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	if st.Hub != "skiff-t1-hub" || len(st.Nodes) != 3 || st.APIServer != "https://172.31.0.10:6443" {
		t.Errorf("state %+v", st)
	}
	for i, n := range st.Nodes {
		if want := fmt.Sprintf("172.31.0.%d", 10+i); n.IP != want || n.Name != fmt.Sprintf("t1-%d", i) ||
			n.Netns != fmt.Sprintf("skiff-t1-n%d", i) || n.DataDir != filepath.Join(dir, "nodes", fmt.Sprint(i)) {
			t.Errorf("node %d: %+v", i, n)
		}
	}
}

// TestNetworkAndForwarder builds a two-node lab network (no processes),
// reaches a listener in node 1's namespace from the host's loopback
// through a forwarder that dials from node 0's namespace across the hub,
// and tears it down.
func TestNetworkAndForwarder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	name := fmt.Sprintf("u%d", os.Getpid())
	l, err := New(Config{Name: name, Dir: t.TempDir(), Binary: "/bin/true", Nodes: 2, Subnet: "172.31.250.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	ctx := context.Background()
	t.Cleanup(func() { _ = deleteNetwork(ctx, st) })
	if err := l.save(); err != nil {
		t.Fatal(err)
	}
	if err := createNetwork(ctx, st); err != nil {
		t.Fatal(err)
	}
	ln, err := netns.Listen(netnsPath(st.Nodes[1].Netns), "tcp", net.JoinHostPort(st.Nodes[1].IP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "echo %s", line)
			}()
		}
	}()
	f, err := NewForwarder("127.0.0.1:0", netnsPath(st.Nodes[0].Netns), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c, err := net.DialTimeout("tcp", f.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "hello %d\n", i)
		got, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if want := fmt.Sprintf("echo hello %d\n", i); err != nil || got != want {
			t.Fatalf("through the forwarder: %q, %v; want %q", got, err, want)
		}
	}
	if err := f.Close(); err != nil {
		t.Errorf("close forwarder: %v", err)
	}
	// the host itself has no address of the lab
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if strings.HasPrefix(a.String(), "172.31.250.") {
				t.Errorf("the host has lab address %s", a)
			}
		}
	}

	loaded, err := Load(st.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := loaded.Down(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range append([]string{st.Hub}, st.Nodes[0].Netns, st.Nodes[1].Netns) {
		if _, err := os.Stat(netnsPath(n)); err == nil {
			t.Errorf("namespace %s left after Down", n)
		}
	}
	if _, err := os.Stat(filepath.Join(st.Dir, StateFile)); err == nil {
		t.Error("state file left after Down")
	}
	if err := loaded.Down(ctx); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

// TestUpFailsCleanly starts a lab whose "skiff" exits at once: Up fails
// and leaves no namespace and no state file.
func TestUpFailsCleanly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	l, err := New(Config{Name: fmt.Sprintf("f%d", os.Getpid()), Dir: t.TempDir(), Binary: "/bin/false", Nodes: 2,
		Subnet: "172.31.251.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	st := l.State()
	t.Cleanup(func() { _ = deleteNetwork(context.Background(), st) })
	err = l.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "skiff server exited") {
		t.Fatalf("Up: %v, want the server's exit", err)
	}
	for _, n := range append([]string{st.Hub}, st.Nodes[0].Netns, st.Nodes[1].Netns) {
		if _, err := os.Stat(netnsPath(n)); err == nil {
			t.Errorf("namespace %s left after a failed Up", n)
		}
	}
	if _, err := os.Stat(filepath.Join(st.Dir, StateFile)); err == nil {
		t.Error("state file left after a failed Up")
	}
}
