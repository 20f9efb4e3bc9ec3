package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// hubBridge is the bridge in the hub namespace that joins the nodes.
const hubBridge = "lab0"

// createNetwork makes the hub namespace with its bridge and, per node, a
// namespace with eth0 (the node's lab address) whose veth peer is a port
// of the bridge. Nothing is made in the caller's namespace.
func createNetwork(ctx context.Context, st State) error {
	subnet, err := netip.ParsePrefix(st.Subnet)
	if err != nil {
		return err
	}
	steps := [][]string{
		{"netns", "add", st.Hub},
		{"-n", st.Hub, "link", "set", "lo", "up"},
		{"-n", st.Hub, "link", "add", hubBridge, "type", "bridge"},
		{"-n", st.Hub, "link", "set", hubBridge, "up"},
	}
	for i, n := range st.Nodes {
		port := "n" + strconv.Itoa(i)
		steps = append(steps,
			[]string{"netns", "add", n.Netns},
			[]string{"-n", n.Netns, "link", "set", "lo", "up"},
			[]string{"-n", st.Hub, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.Netns},
			[]string{"-n", st.Hub, "link", "set", port, "master", hubBridge},
			[]string{"-n", st.Hub, "link", "set", port, "up"},
			[]string{"-n", n.Netns, "addr", "add", n.IP + "/" + strconv.Itoa(subnet.Bits()), "dev", "eth0"},
			[]string{"-n", n.Netns, "link", "set", "eth0", "up"},
		)
	}
	for _, args := range steps {
		if err := ip(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// deleteNetwork removes the namespaces of st that exist (their veths,
// routes and nftables tables go with them).
func deleteNetwork(ctx context.Context, st State) error {
	var errs []error
	names := []string{st.Hub}
	for _, n := range st.Nodes {
		names = append(names, n.Netns)
	}
	for _, name := range names {
		if _, err := os.Stat(netnsPath(name)); err != nil {
			continue
		}
		if err := ip(ctx, "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// netnsPath is where iproute2 keeps the namespace name.
func netnsPath(name string) string { return "/run/netns/" + name }

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// VXLANSupported reports (nil) whether the kernel can make VXLAN devices,
// trying in a network namespace of its own (the host's is left alone).
func VXLANSupported(ctx context.Context) error {
	name := "skiff-vxprobe-" + strconv.Itoa(os.Getpid())
	if err := ip(ctx, "netns", "add", name); err != nil {
		return err
	}
	defer func() { _ = ip(context.Background(), "netns", "del", name) }()
	return ip(ctx, "-n", name, "link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "4789", "local", "192.0.2.1", "nolearning")
}
