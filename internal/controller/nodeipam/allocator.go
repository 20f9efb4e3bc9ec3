package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"sync"
)

// ErrExhausted is returned when every node CIDR is taken.
var ErrExhausted = errors.New("no pod CIDR left")

// maxSubnets bounds the subnets an allocator hands out (a /8 cut in /32s
// and the like are pointless and would only slow the search).
const maxSubnets = 1 << 24

// Allocator hands out the subnets of a cluster CIDR, one per node.
type Allocator struct {
	mu      sync.Mutex
	cluster netip.Prefix
	bits    int
	size    int
	next    int
	used    map[int]string // subnet index → node
	byNode  map[string]int
}

// NewAllocator cuts cluster into subnets of maskSize bits.
func NewAllocator(cluster netip.Prefix, maskSize int) (*Allocator, error) {
	cluster = cluster.Masked()
	if maskSize < cluster.Bits() || maskSize > cluster.Addr().BitLen() {
		return nil, fmt.Errorf("node mask size /%d does not fit cluster CIDR %s", maskSize, cluster)
	}
	size := maxSubnets
	if maskSize-cluster.Bits() < 24 {
		size = 1 << (maskSize - cluster.Bits())
	}
	return &Allocator{cluster: cluster, bits: maskSize, size: size, used: map[int]string{}, byNode: map[string]int{}}, nil
}

func (a *Allocator) prefix(i int) netip.Prefix {
	base := new(big.Int).SetBytes(a.cluster.Addr().AsSlice())
	off := new(big.Int).Lsh(big.NewInt(int64(i)), uint(a.cluster.Addr().BitLen()-a.bits))
	b := base.Add(base, off).FillBytes(make([]byte, a.cluster.Addr().BitLen()/8))
	addr, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(addr, a.bits)
}

// index returns the subnet index of p, or false when p is not one of the
// allocator's subnets.
func (a *Allocator) index(p netip.Prefix) (int, bool) {
	if p.Bits() != a.bits || p.Masked() != p || !a.cluster.Contains(p.Addr()) {
		return 0, false
	}
	base := new(big.Int).SetBytes(a.cluster.Addr().AsSlice())
	off := new(big.Int).Sub(new(big.Int).SetBytes(p.Addr().AsSlice()), base)
	i := off.Rsh(off, uint(a.cluster.Addr().BitLen()-a.bits))
	if !i.IsInt64() || i.Int64() >= int64(a.size) {
		return 0, false
	}
	return int(i.Int64()), true
}

// Occupy records that node holds p; it reports false when p is outside
// the cluster CIDR or held by another node.
func (a *Allocator) Occupy(node string, p netip.Prefix) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	i, ok := a.index(p)
	if !ok {
		return false
	}
	if owner, taken := a.used[i]; taken && owner != node {
		return false
	}
	if old, had := a.byNode[node]; had && old != i {
		delete(a.used, old)
	}
	a.used[i], a.byNode[node] = node, i
	return true
}

// Allocate returns node's subnet, taking the next free one if it has none.
func (a *Allocator) Allocate(node string) (netip.Prefix, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i, ok := a.byNode[node]; ok {
		return a.prefix(i), nil
	}
	if len(a.used) >= a.size {
		return netip.Prefix{}, ErrExhausted
	}
	for range a.size {
		i := a.next
		a.next = (a.next + 1) % a.size
		if _, taken := a.used[i]; !taken {
			a.used[i], a.byNode[node] = node, i
			return a.prefix(i), nil
		}
	}
	return netip.Prefix{}, ErrExhausted
}

// Release frees node's subnet.
func (a *Allocator) Release(node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i, ok := a.byNode[node]; ok {
		delete(a.used, i)
		delete(a.byNode, node)
	}
}
