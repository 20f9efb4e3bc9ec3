package podnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// IPRoute is the RouteTable of this process's network namespace, through
// the ip command (iproute2) of the main routing table.
type IPRoute struct{}

var _ RouteTable = IPRoute{}

// List returns the routes tagged RouteProtocol.
func (IPRoute) List(ctx context.Context) ([]Route, error) {
	out, err := ipCmd(ctx, "-j", "-4", "route", "show", "table", "main", "proto", strconv.Itoa(RouteProtocol))
	if err != nil {
		return nil, err
	}
	return parseRoutes(out)
}

func parseRoutes(out []byte) ([]Route, error) {
	var raw []struct {
		Type    string `json:"type"`
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("ip route show: %w", err)
		}
	}
	var rs []Route
	for _, r := range raw {
		dst, err := netip.ParsePrefix(r.Dst)
		if err != nil {
			// a host route prints without a prefix length
			a, aerr := netip.ParseAddr(r.Dst)
			if aerr != nil {
				return nil, fmt.Errorf("ip route show: destination %q: %w", r.Dst, err)
			}
			dst = netip.PrefixFrom(a, a.BitLen())
		}
		route := Route{Dst: dst}
		if r.Type != "unreachable" {
			if route.Via, err = netip.ParseAddr(r.Gateway); err != nil {
				return nil, fmt.Errorf("ip route show: gateway of %s %q: %w", r.Dst, r.Gateway, err)
			}
		}
		rs = append(rs, route)
	}
	return rs, nil
}

// Replace adds r or replaces the route to its destination.
func (IPRoute) Replace(ctx context.Context, r Route) error {
	_, err := ipCmd(ctx, routeArgs("replace", r)...)
	return err
}

// Delete removes r.
func (IPRoute) Delete(ctx context.Context, r Route) error {
	_, err := ipCmd(ctx, routeArgs("del", r)...)
	return err
}

func routeArgs(verb string, r Route) []string {
	args := []string{"-4", "route", verb}
	if !r.Via.IsValid() {
		args = append(args, "unreachable", r.Dst.String())
	} else {
		args = append(args, r.Dst.String(), "via", r.Via.String())
	}
	return append(args, "proto", strconv.Itoa(RouteProtocol))
}

func ipCmd(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, stderr)
	}
	return out, nil
}

// TableName is podnet's nftables table (family ip).
const TableName = "skiff-podnet"

// NFTables is the Masquerader of this process's network namespace: the
// table `ip skiff-podnet` with one postrouting chain.
type NFTables struct{}

var _ Masquerader = NFTables{}

// Apply (re)writes the table: traffic from podCIDR to anything outside
// clusterCIDR (and not multicast) is masqueraded.
func (NFTables) Apply(podCIDR, clusterCIDR netip.Prefix) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	// add then delete then add: one transaction that works whether or not
	// the table exists, and replaces its contents
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: masqueradeRule(podCIDR, clusterCIDR)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: program %s: %w", TableName, err)
	}
	return nil
}

// masqueradeRule is `ip saddr POD ip daddr != CLUSTER ip daddr != 224.0.0.0/4 masquerade`.
func masqueradeRule(podCIDR, clusterCIDR netip.Prefix) []expr.Any {
	match := func(off uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
		p = p.Masked()
		mask := netipMask(p.Bits())
		a := p.Addr().As4()
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: op, Register: 1, Data: a[:]},
		}
	}
	var out []expr.Any
	out = append(out, match(12, podCIDR, expr.CmpOpEq)...)
	out = append(out, match(16, clusterCIDR, expr.CmpOpNeq)...)
	out = append(out, match(16, netip.MustParsePrefix("224.0.0.0/4"), expr.CmpOpNeq)...)
	return append(out, &expr.Masq{})
}

func netipMask(bits int) []byte {
	m := make([]byte, 4)
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// Cleanup deletes the table if it exists.
func (NFTables) Cleanup() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete %s: %w", TableName, err)
	}
	return nil
}
