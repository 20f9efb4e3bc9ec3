package podnet

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

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
	want := []Route{{Dst: netip.MustParsePrefix("10.244.0.0/16")}, {Dst: netip.MustParsePrefix("10.244.3.0/24"), Via: netip.MustParseAddr("172.31.9.3")}}
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
		if err := tbl.Delete(ctx, want[1]); err != nil {
			return err
		}
		if got, _ := tbl.List(ctx); !slices.Equal(got, want[:1]) {
			return fmt.Errorf("after delete: routes %v, want %v", got, want[:1])
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
