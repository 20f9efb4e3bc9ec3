package podnet

import (
	"context"
	"encoding/json"
	"errors"
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
		Dev     string `json:"dev"`
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
		if r.Dev == VXLANDevice {
			route.Dev = r.Dev
		}
		if r.Type == "" && r.Gateway == "" && r.Dev != "" {
			rs = append(rs, Route{Dst: dst, Dev: r.Dev})
			continue
		}
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
	switch {
	case !r.Via.IsValid() && r.Dev != "":
		args = append(args, r.Dst.String(), "dev", r.Dev)
	case !r.Via.IsValid():
		args = append(args, "unreachable", r.Dst.String())
	default:
		args = append(args, r.Dst.String(), "via", r.Via.String())
		if r.Dev != "" {
			args = append(args, "dev", r.Dev, "onlink")
		}
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

// IPVXLAN is the Overlay of this process's network namespace, through
// iproute2's ip and bridge commands.
type IPVXLAN struct{}

var _ Overlay = IPVXLAN{}

// Ensure makes VXLANDevice on local (recreating it if its VNI, port,
// local address or MAC differ), gives it vtep/32 and sets it up. Its MTU
// is the underlay device's less the VXLAN overhead.
func (IPVXLAN) Ensure(ctx context.Context, local, vtep netip.Addr) error {
	mac := VTEPMAC(local)
	ok, err := vxlanMatches(ctx, mac, local)
	if err != nil {
		return err
	}
	if !ok {
		args := []string{"link", "add", VXLANDevice}
		if mtu := underlayMTU(ctx, local); mtu > vxlanOverhead {
			args = append(args, "mtu", strconv.Itoa(mtu-vxlanOverhead))
		}
		args = append(args, "address", mac, "type", "vxlan", "id", strconv.Itoa(VXLANID),
			"local", local.String(), "dstport", strconv.Itoa(VXLANPort), "nolearning")
		if _, err := ipCmd(ctx, args...); err != nil {
			return err
		}
	}
	if _, err := ipCmd(ctx, "addr", "replace", vtep.String()+"/32", "dev", VXLANDevice); err != nil {
		return err
	}
	_, err = ipCmd(ctx, "link", "set", VXLANDevice, "up")
	return err
}

// vxlanMatches reports whether VXLANDevice exists as Ensure makes it; one
// that differs is deleted.
func vxlanMatches(ctx context.Context, mac string, local netip.Addr) (bool, error) {
	out, err := ipCmd(ctx, "-j", "-d", "link", "show", "dev", VXLANDevice)
	if err != nil {
		return false, nil // no such device
	}
	var links []struct {
		Address  string `json:"address"`
		LinkInfo struct {
			InfoData struct {
				ID    int    `json:"id"`
				Local string `json:"local"`
				Port  int    `json:"port"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if json.Unmarshal(out, &links) == nil && len(links) == 1 {
		d := links[0].LinkInfo.InfoData
		if links[0].Address == mac && d.ID == VXLANID && d.Local == local.String() && d.Port == VXLANPort {
			return true, nil
		}
	}
	if _, err := ipCmd(ctx, "link", "del", VXLANDevice); err != nil {
		return false, err
	}
	return false, nil
}

// underlayMTU is the MTU of the device that holds ip (0 if unknown).
func underlayMTU(ctx context.Context, ip netip.Addr) int {
	out, err := ipCmd(ctx, "-j", "addr", "show", "to", ip.String()+"/32")
	if err != nil {
		return 0
	}
	var links []struct {
		MTU int `json:"mtu"`
	}
	if json.Unmarshal(out, &links) != nil || len(links) == 0 {
		return 0
	}
	return links[0].MTU
}

// SetPeers makes the device's permanent neighbour (VTEP → MAC) and
// forwarding (MAC → Remote) entries exactly peers.
func (IPVXLAN) SetPeers(ctx context.Context, peers []Peer) error {
	var errs []error
	wantNeigh, wantFDB := map[string]string{}, map[string]string{}
	for _, pe := range peers {
		wantNeigh[pe.VTEP.String()] = pe.MAC
		wantFDB[pe.MAC] = pe.Remote.String()
	}
	if out, err := ipCmd(ctx, "-j", "neigh", "show", "dev", VXLANDevice); err == nil {
		var have []struct {
			Dst    string `json:"dst"`
			LLAddr string `json:"lladdr"`
		}
		if json.Unmarshal(out, &have) == nil {
			for _, n := range have {
				if mac, ok := wantNeigh[n.Dst]; ok && mac == n.LLAddr {
					delete(wantNeigh, n.Dst)
				} else if !ok {
					_, err := ipCmd(ctx, "neigh", "del", n.Dst, "dev", VXLANDevice)
					errs = append(errs, err)
				}
			}
		}
	}
	if out, err := bridgeCmd(ctx, "-j", "fdb", "show", "dev", VXLANDevice); err == nil {
		var have []struct {
			MAC string `json:"mac"`
			Dst string `json:"dst"`
		}
		if json.Unmarshal(out, &have) == nil {
			for _, f := range have {
				if f.Dst == "" {
					continue // the device's own entries
				}
				if dst, ok := wantFDB[f.MAC]; ok && dst == f.Dst {
					delete(wantFDB, f.MAC)
				} else if !ok {
					_, err := bridgeCmd(ctx, "fdb", "del", f.MAC, "dev", VXLANDevice, "dst", f.Dst, "self")
					errs = append(errs, err)
				}
			}
		}
	}
	for mac, dst := range wantFDB {
		_, err := bridgeCmd(ctx, "fdb", "replace", mac, "dev", VXLANDevice, "dst", dst, "self", "permanent")
		errs = append(errs, err)
	}
	for vtep, mac := range wantNeigh {
		_, err := ipCmd(ctx, "neigh", "replace", vtep, "lladdr", mac, "dev", VXLANDevice, "nud", "permanent")
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cleanup deletes the device (with its neighbours, entries and routes).
func (IPVXLAN) Cleanup(ctx context.Context) error {
	if _, err := ipCmd(ctx, "link", "show", "dev", VXLANDevice); err != nil {
		return nil // none
	}
	_, err := ipCmd(ctx, "link", "del", VXLANDevice)
	return err
}

func bridgeCmd(ctx context.Context, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, "bridge", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("bridge %s: %w: %s", strings.Join(args, " "), err, stderr)
	}
	return out, nil
}
