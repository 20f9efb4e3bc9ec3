package lab

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/proxy/netns"
)

// TestForward adds a named forwarder to a lab network (in-process mode),
// reaches a listener in node 1's namespace through it, keeps it when asked
// again for the same target, moves it (same address) to a new target, and
// checks that Down closes it.
func TestForward(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	l, err := New(Config{Name: fmt.Sprintf("f%d", os.Getpid()), Dir: t.TempDir(), Binary: "/bin/true", Nodes: 2, Subnet: "172.31.251.0/24"})
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
	serve := func(tag string) string {
		ln, err := netns.Listen(netnsPath(st.Nodes[1].Netns), "tcp", net.JoinHostPort(st.Nodes[1].IP, "0"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintf(c, "%s\n", tag)
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	get := func(addr string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			t.Fatalf("through %s: %v", addr, err)
		}
		return line
	}
	a, b := serve("a"), serve("b")
	addr, err := l.Forward("demo", "127.0.0.1:0", a)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(addr); got != "a\n" {
		t.Fatalf("got %q, want a", got)
	}
	if again, err := l.Forward("demo", "127.0.0.1:0", a); err != nil || again != addr {
		t.Fatalf("same target again: %q, %v; want the running forwarder %s", again, err, addr)
	}
	moved, err := l.Forward("demo", "127.0.0.1:0", b)
	if err != nil || moved != addr {
		t.Fatalf("new target: %q, %v; want the old address %s", moved, err, addr)
	}
	if got := get(addr); got != "b\n" {
		t.Fatalf("got %q, want b", got)
	}
	if f, ok := l.ForwardOf("demo"); !ok || f.Target != b || f.Addr != addr {
		t.Fatalf("state: %+v, %v", f, ok)
	}
	if err := l.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts after Down", addr)
	}
}
