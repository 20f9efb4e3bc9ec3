package podnet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/skiff-sh/skiff/internal/proxy/netns"
)

// TestSystemInNetns programs routes and the masquerade table for real,
// inside a network namespace the test creates.
func TestSystemInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	name := fmt.Sprintf("skiff-podnet-%d", os.Getpid())
	path, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Delete(name) })
	for _, args := range [][]string{{"-n", name, "link", "add", "a0", "type", "veth", "peer", "name", "a1"},
		{"-n", name, "addr", "add", "172.31.9.2/24", "dev", "a0"}, {"-n", name, "link", "set", "a0", "up"},
		{"-n", name, "link", "set", "a1", "up"}} {
		if err := netns.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	want := []Route{{Dst: netip.MustParsePrefix("10.43.0.0/16"), Dev: "lo"}, {Dst: netip.MustParsePrefix("10.244.0.0/16")},
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Via: netip.MustParseAddr("172.31.9.3")}}
	err = netns.Do(path, func() error {
		tbl := IPRoute{}
		for _, r := range want {
			if err := tbl.Replace(ctx, r); err != nil {
				return err
			}
		}
		got, err := tbl.List(ctx)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("routes %v, want %v", got, want)
		}
		if err := tbl.Delete(ctx, want[2]); err != nil {
			return err
		}
		if got, _ := tbl.List(ctx); !slices.Equal(got, want[:2]) {
			return fmt.Errorf("after delete: routes %v, want %v", got, want[:2])
		}
		m := NFTables{}
		for range 2 { // applying twice replaces
			if err := m.Apply(netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("10.244.0.0/16")); err != nil {
				return err
			}
		}
		out, err := exec.Command("nft", "list", "table", "ip", TableName).CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft list: %w: %s", err, out)
		}
		rule := "ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade"
		if strings.Count(string(out), "masquerade") != 1 || !strings.Contains(string(out), rule) {
			return fmt.Errorf("table:\n%s\nwant one rule %q", out, rule)
		}
		if err := m.Cleanup(); err != nil {
			return err
		}
		if err := exec.Command("nft", "list", "table", "ip", TableName).Run(); err == nil {
			return fmt.Errorf("table %s still there after Cleanup", TableName)
		}
		return m.Cleanup() // no table: no error
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTwoNodesInNetns runs podnet in two network namespaces joined by a
// veth pair (the underlay) and checks that each node's pod range is
// reached from the other, in both modes. A /32 on each node's loopback
// stands for its pod bridge's gateway.
func TestTwoNodesInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"ip", "bridge"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	for _, mode := range []string{ModeHostGW, ModeVXLAN} {
		t.Run(mode, func(t *testing.T) {
			if mode == ModeVXLAN {
				probe := fmt.Sprintf("skiff-vxprobe-%d", os.Getpid())
				if _, err := netns.Create(probe); err != nil {
					t.Fatal(err)
				}
				err := netns.IP("-n", probe, "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "4789", "nolearning")
				_ = netns.Delete(probe)
				if err != nil {
					t.Skipf("the kernel makes no VXLAN device: %v", err)
				}
			}
			nodes := []*corev1.Node{node("a", "10.244.0.0/24", "172.31.9.1"), node("b", "10.244.1.0/24", "172.31.9.2")}
			var paths []string
			for i, n := range nodes {
				name := fmt.Sprintf("skiff-podnet-%d-%s-%d", os.Getpid(), mode, i)
				path, err := netns.Create(name)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = netns.Delete(name) })
				paths = append(paths, path)
				if err := netns.IP("-n", name, "addr", "add", strings.TrimSuffix(n.Spec.PodCIDR, "0/24")+"1/32", "dev", "lo"); err != nil {
					t.Fatal(err)
				}
			}
			a, b := filepath.Base(paths[0]), filepath.Base(paths[1])
			for _, args := range [][]string{{"-n", a, "link", "add", "u0", "type", "veth", "peer", "name", "u0", "netns", b},
				{"-n", a, "addr", "add", "172.31.9.1/24", "dev", "u0"}, {"-n", b, "addr", "add", "172.31.9.2/24", "dev", "u0"},
				{"-n", a, "link", "set", "u0", "up"}, {"-n", b, "link", "set", "u0", "up"}} {
				if err := netns.IP(args...); err != nil {
					t.Fatal(err)
				}
			}
			for i, path := range paths {
				p, err := New(Config{Client: fake.NewClientset(), NodeName: nodes[i].Name, Mode: mode, ClusterCIDR: "10.244.0.0/16",
					ServiceCIDR: "10.43.0.0/16"})
				if err != nil {
					t.Fatal(err)
				}
				for range 2 { // a second sync changes nothing
					if err := netns.Do(path, func() error { return p.Sync(context.Background(), nodes) }); err != nil {
						t.Fatalf("sync on %s: %v", nodes[i].Name, err)
					}
				}
			}
			ln, err := netns.Listen(paths[1], "tcp", "10.244.1.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = c.Write([]byte("pong\n"))
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := netns.Dialer(paths[0], &net.Dialer{})(ctx, "tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("node a to %s: %v", ln.Addr(), err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "pong\n" {
				t.Fatalf("read %q, %v", got, err)
			}
			// node a's own connection to a cluster IP that the proxy's
			// output rule translates works (the service route lets the
			// route lookup pass); an untranslated one never leaves
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			nat := "table ip t {\n chain out {\n type nat hook output priority -100;\n ip daddr 10.43.0.10 tcp dport 80 dnat to 10.244.1.1:" + port + ";\n }\n}\n"
			if err := netns.Do(paths[0], func() error {
				cmd := exec.Command("nft", "-f", "-")
				cmd.Stdin = strings.NewReader(nat)
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("nft: %w: %s", err, out)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = c.Write([]byte("pong\n"))
			}()
			sc, err := netns.Dialer(paths[0], &net.Dialer{})(ctx, "tcp", "10.43.0.10:80")
			if err != nil {
				t.Fatalf("node a to a translated cluster IP: %v", err)
			}
			_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
			if got, err := bufio.NewReader(sc).ReadString('\n'); err != nil || got != "pong\n" {
				t.Fatalf("through the cluster IP: read %q, %v", got, err)
			}
			sc.Close()
			short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancelShort()
			if c, err := netns.Dialer(paths[0], &net.Dialer{})(short, "tcp", "10.43.0.11:80"); err == nil {
				c.Close()
				t.Error("an untranslated cluster IP connected")
			}

			// an address of the cluster CIDR without a node fails at once
			_, err = netns.Dialer(paths[0], &net.Dialer{})(ctx, "tcp", "10.244.7.1:80")
			if err == nil || !strings.Contains(err.Error(), "no route to host") {
				t.Errorf("dial into a pod CIDR without a node: %v, want no route", err)
			}
		})
	}
}
