package loadbalancer

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrExhausted is returned when every address of the pool is taken.
var ErrExhausted = errors.New("LoadBalancer IP pool exhausted")

// Pool hands out IPv4 addresses from ranges and remembers which service
// holds each. It is not safe for concurrent use.
type Pool struct {
	ranges []ipRange
	owner  map[netip.Addr]string
	held   map[string]netip.Addr
}

type ipRange struct{ first, last netip.Addr }

// ParsePool parses a comma-separated list of CIDRs ("192.168.50.0/28":
// every address but the network and broadcast ones when the prefix is
// shorter than /31) and ranges ("192.168.50.10-192.168.50.20").
func ParsePool(spec string) (*Pool, error) {
	p := &Pool{owner: map[netip.Addr]string{}, held: map[string]netip.Addr{}}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var r ipRange
		if first, last, ok := strings.Cut(part, "-"); ok {
			a, err1 := netip.ParseAddr(strings.TrimSpace(first))
			b, err2 := netip.ParseAddr(strings.TrimSpace(last))
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("pool range %q: %w", part, err)
			}
			r = ipRange{a, b}
		} else {
			pfx, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("pool %q: %w", part, err)
			}
			pfx = pfx.Masked()
			if !pfx.Addr().Is4() {
				return nil, fmt.Errorf("pool %q: only IPv4 is supported", part)
			}
			r = ipRange{pfx.Addr(), lastAddr(pfx)}
			if pfx.Bits() < 31 {
				r = ipRange{r.first.Next(), r.last.Prev()}
			}
		}
		if !r.first.Is4() || !r.last.Is4() || r.last.Less(r.first) {
			return nil, fmt.Errorf("pool %q: need an IPv4 range with first <= last", part)
		}
		p.ranges = append(p.ranges, r)
	}
	return p, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Empty reports whether the pool has no addresses at all.
func (p *Pool) Empty() bool { return len(p.ranges) == 0 }

// Contains reports whether ip is in the pool.
func (p *Pool) Contains(ip netip.Addr) bool {
	for _, r := range p.ranges {
		if !ip.Less(r.first) && !r.last.Less(ip) {
			return true
		}
	}
	return false
}

// Occupy records that key holds ip (found in a service's status); false
// when ip is outside the pool or held by another key, or key holds
// another address.
func (p *Pool) Occupy(key string, ip netip.Addr) bool {
	if !p.Contains(ip) {
		return false
	}
	if o, ok := p.owner[ip]; ok {
		return o == key
	}
	if _, ok := p.held[key]; ok {
		return false
	}
	p.owner[ip], p.held[key] = key, ip
	return true
}

// Allocate gives key an address: the one it holds, want when that is free
// and in the pool, else the lowest free one.
func (p *Pool) Allocate(key string, want netip.Addr) (netip.Addr, error) {
	if ip, ok := p.held[key]; ok {
		return ip, nil
	}
	if want.IsValid() && p.Occupy(key, want) {
		return want, nil
	}
	for _, r := range p.ranges {
		for ip := r.first; ip.IsValid() && !r.last.Less(ip); ip = ip.Next() {
			if _, taken := p.owner[ip]; !taken {
				p.owner[ip], p.held[key] = key, ip
				return ip, nil
			}
		}
	}
	return netip.Addr{}, ErrExhausted
}

// Held is the address key holds, if any.
func (p *Pool) Held(key string) (netip.Addr, bool) {
	ip, ok := p.held[key]
	return ip, ok
}

// Release frees what key holds.
func (p *Pool) Release(key string) {
	if ip, ok := p.held[key]; ok {
		delete(p.owner, ip)
		delete(p.held, key)
	}
}
