package proxy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the proxy's own table (family ip); the proxy never touches
// any other.
const TableName = "skiff-proxy"

// Names of the fixed chains and maps of the table.
const (
	chainServices    = "services"
	chainCheck       = "endpoints-check"
	chainMark        = "mark-for-masquerade"
	chainMasquerade  = "masquerading"
	chainReject      = "reject-chain"
	mapServiceIPs    = "service-ips"
	mapNodePorts     = "service-nodeports"
	mapNoEndpointIPs = "no-endpoint-services"
	mapNoEndpointNPs = "no-endpoint-nodeports"
	// mapChoice holds every balancing decision: (random index, chain id)
	// -> endpoint chain. One shared map instead of an anonymous map per
	// service: the kernel names anonymous sets by scanning all the
	// table's sets, which makes a full sync quadratic.
	mapChoice      = "endpoint-choice"
	masqMark       = 0x4000
	elementsPerMsg = 256
)

// Applier programs a Model into the table through netlink, one
// transaction per Apply.
type Applier struct {
	netns   int
	applied Model
	synced  bool
	// Messages is the size of the last transaction (netlink messages).
	Messages int
}

// NewApplier returns an applier for the network namespace open as netnsFD
// (0: the caller's).
func NewApplier(netnsFD int) *Applier { return &Applier{netns: netnsFD} }

// Resync makes the next Apply a full one (after a failed transaction).
func (a *Applier) Resync() { a.synced = false }

// batch is one transaction being built.
type batch struct {
	c     *nftables.Conn
	t     *nftables.Table
	msgs  int
	maps  map[string]*nftables.Set
	err   error
	chain map[string]*nftables.Chain
}

func (a *Applier) newBatch() (*batch, error) {
	b := &batch{t: &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4},
		chain: map[string]*nftables.Chain{}}
	opts := []nftables.ConnOption{nftables.WithSockOptions(func(c *netlink.Conn) error {
		// The whole batch is one datagram, so the send buffer must hold
		// it; and nftables v0.3 asks the kernel to acknowledge every
		// message, and the acknowledgements queue up until the batch is
		// committed, so the receive buffer must hold them all.
		size := min(1<<30, max(4<<20, b.msgs*1024+(1<<20)))
		if err := c.SetWriteBuffer(size); err != nil {
			return err
		}
		return c.SetReadBuffer(size)
	})}
	if a.netns > 0 {
		opts = append(opts, nftables.WithNetNSFd(a.netns))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("proxy: netlink: %w", err)
	}
	b.c = c
	ipKey := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	npKey := nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	b.maps = map[string]*nftables.Set{}
	for name, key := range map[string]nftables.SetDatatype{mapServiceIPs: ipKey, mapNoEndpointIPs: ipKey, mapNodePorts: npKey, mapNoEndpointNPs: npKey} {
		b.maps[name] = &nftables.Set{Table: b.t, Name: name, IsMap: true, Concatenation: true, KeyType: key, DataType: nftables.TypeVerdict}
	}
	return b, nil
}

func (b *batch) ch(name string) *nftables.Chain {
	c, ok := b.chain[name]
	if !ok {
		c = &nftables.Chain{Name: name, Table: b.t}
		b.chain[name] = c
	}
	return c
}

func (b *batch) addRule(chain string, exprs ...expr.Any) {
	b.msgs++
	b.c.AddRule(&nftables.Rule{Table: b.t, Chain: b.ch(chain), Exprs: exprs})
}

func (b *batch) addSet(s *nftables.Set, elems []nftables.SetElement) {
	b.msgs += 2
	if err := b.c.AddSet(s, elems); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *batch) elements(set string, elems []nftables.SetElement, add bool) {
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMsg)
		var err error
		if add {
			err = b.c.SetAddElements(b.maps[set], elems[:n])
		} else {
			err = b.c.SetDeleteElements(b.maps[set], elems[:n])
		}
		if err != nil && b.err == nil {
			b.err = err
		}
		b.msgs++
		elems = elems[n:]
	}
}

func (b *batch) flush() error {
	if b.err != nil {
		return fmt.Errorf("proxy: build transaction: %w", b.err)
	}
	if err := b.c.Flush(); err != nil {
		return fmt.Errorf("proxy: nftables transaction (%d messages): %w", b.msgs, err)
	}
	return nil
}

// Apply programs m. The first Apply (and the one after Resync) reconciles
// the whole table with m in one transaction without deleting it, so
// established connections (kept by conntrack) and unchanged services see
// no gap; later ones rewrite only the services whose entry in m is not
// the one applied last time.
func (a *Applier) Apply(m Model) error {
	b, err := a.newBatch()
	if err != nil {
		return err
	}
	if !a.synced {
		err = a.full(b, m)
	} else {
		err = a.incremental(b, m)
	}
	a.Messages = b.msgs
	if err != nil {
		a.synced = false
		return err
	}
	a.applied, a.synced = maps(m), true
	return nil
}

func maps(m Model) Model {
	out := make(Model, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// full rewrites every chain and map of the table in one transaction.
func (a *Applier) full(b *batch, m Model) error {
	existingChains := map[string]bool{}
	existingSets := map[string]bool{}
	if _, err := b.c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err == nil {
		chains, err := b.c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			return fmt.Errorf("proxy: list chains: %w", err)
		}
		for _, c := range chains {
			if c.Table.Name == TableName {
				existingChains[c.Name] = true
			}
		}
		sets, err := b.c.GetSets(b.t)
		if err != nil {
			return fmt.Errorf("proxy: list sets: %w", err)
		}
		for _, s := range sets {
			if !s.Anonymous {
				existingSets[s.Name] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("proxy: list table: %w", err)
	}
	b.c.AddTable(b.t)
	b.msgs++
	// maps and sets first: rules refer to them
	for _, name := range []string{mapServiceIPs, mapNoEndpointIPs, mapNodePorts, mapNoEndpointNPs} {
		b.addSet(b.maps[name], nil)
		if existingSets[name] {
			b.c.FlushSet(b.maps[name])
			b.msgs++
		}
	}
	for _, svc := range m {
		for name, timeout := range svc.AffinitySets {
			if !existingSets[name] { // keep the clients it remembers
				b.addSet(affinitySet(b.t, name, timeout), nil)
			}
		}
	}
	// every chain exists before any rule jumps to it
	b.staticChains()
	for _, svc := range m {
		for name := range svc.Chains {
			if !existingChains[name] {
				b.c.AddChain(b.ch(name))
				b.msgs++
			}
		}
	}
	// chain names are content-addressed (see BuildService): a chain the
	// table already has holds the wanted rules and stays as it is
	keep := map[string]bool{}
	for _, svc := range m {
		for name := range svc.Chains {
			if existingChains[name] {
				keep[name] = true
			}
		}
	}
	for name := range existingChains {
		if !keep[name] {
			b.c.FlushChain(b.ch(name))
			b.msgs++
		}
	}
	b.staticRules()
	var add dispatch
	for _, svc := range m {
		for name, rules := range svc.Chains {
			if !keep[name] {
				b.rules(name, rules)
			}
		}
		add.collect(svc)
	}
	add.emit(b, true)
	// what the table has that m does not: flushed above, deleted now
	wantChains, wantSets := map[string]bool{}, map[string]bool{}
	for _, name := range staticChainNames() {
		wantChains[name] = true
	}
	for _, svc := range m {
		for name := range svc.Chains {
			wantChains[name] = true
		}
		for name := range svc.AffinitySets {
			wantSets[name] = true
		}
	}
	for name := range existingChains {
		if !wantChains[name] {
			b.c.DelChain(b.ch(name))
			b.msgs++
		}
	}
	for name := range existingSets {
		if _, isMap := b.maps[name]; !isMap && !wantSets[name] {
			b.c.DelSet(&nftables.Set{Table: b.t, Name: name})
			b.msgs++
		}
	}
	return b.flush()
}

// incremental rewrites the services whose entry changed since the last
// Apply.
func (a *Applier) incremental(b *batch, m Model) error {
	var del, add dispatch
	var staleChains, staleSets []string
	type rewrite struct {
		name  string
		rules []Rule
		flush bool
	}
	var rewrites []rewrite
	changed := 0
	for _, k := range keys(a.applied, m) {
		old, cur := a.applied[k], m[k]
		if old == cur {
			continue
		}
		changed++
		if old == nil {
			old = &Service{}
		}
		if cur == nil {
			cur = &Service{}
		}
		for name, timeout := range cur.AffinitySets {
			if _, ok := old.AffinitySets[name]; !ok {
				b.addSet(affinitySet(b.t, name, timeout), nil)
			}
		}
		for name, rules := range cur.Chains {
			prev, ok := old.Chains[name]
			switch {
			case !ok:
				b.c.AddChain(b.ch(name))
				b.msgs++
				rewrites = append(rewrites, rewrite{name: name, rules: rules})
			case !rulesEqual(prev, rules):
				rewrites = append(rewrites, rewrite{name: name, rules: rules, flush: true})
			}
		}
		for name := range old.Chains {
			if _, ok := cur.Chains[name]; !ok {
				staleChains = append(staleChains, name)
			}
		}
		for name := range old.AffinitySets {
			if _, ok := cur.AffinitySets[name]; !ok {
				staleSets = append(staleSets, name)
			}
		}
		for ip, v := range old.IPs {
			if nv, ok := cur.IPs[ip]; !ok || nv != v {
				del.ip(ip, v)
			}
		}
		for ip, v := range cur.IPs {
			if ov, ok := old.IPs[ip]; !ok || ov != v {
				add.ip(ip, v)
			}
		}
		for np, v := range old.NodePorts {
			if nv, ok := cur.NodePorts[np]; !ok || nv != v {
				del.np(np, v)
			}
		}
		for np, v := range cur.NodePorts {
			if ov, ok := old.NodePorts[np]; !ok || ov != v {
				add.np(np, v)
			}
		}
	}
	if changed == 0 {
		return nil
	}
	for _, r := range rewrites {
		if r.flush {
			b.c.FlushChain(b.ch(r.name))
			b.msgs++
		}
		b.rules(r.name, r.rules)
	}
	del.emit(b, false)
	add.emit(b, true)
	for _, name := range staleChains {
		b.c.FlushChain(b.ch(name))
		b.msgs++
	}
	for _, name := range staleChains {
		b.c.DelChain(b.ch(name))
		b.msgs++
	}
	for _, name := range staleSets {
		b.c.DelSet(&nftables.Set{Table: b.t, Name: name})
		b.msgs++
	}
	return b.flush()
}

func keys(a, b Model) []string {
	out := make([]string, 0, len(b))
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func rulesEqual(a, b []Rule) bool {
	return slices.EqualFunc(a, b, func(x, y Rule) bool {
		return x.Kind == y.Kind && x.Target == y.Target && slices.Equal(x.Targets, y.Targets) &&
			x.Set == y.Set && x.Timeout == y.Timeout && x.IP == y.IP && x.Proto == y.Proto && x.Port == y.Port
	})
}

// dispatch collects map elements per map.
type dispatch struct {
	elems map[string][]nftables.SetElement
	seen  map[string]bool
}

func (d *dispatch) put(set string, key []byte, v Verdict) {
	if d.elems == nil {
		d.elems, d.seen = map[string][]nftables.SetElement{}, map[string]bool{}
	}
	// two services claiming one destination (a shared external IP): the
	// first keeps it, as a duplicate would fail the whole transaction
	k := set + "/" + string(key)
	if d.seen[k] {
		return
	}
	d.seen[k] = true
	var verdict *expr.Verdict
	switch v.Kind {
	case Goto:
		verdict = &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain}
	case Reject:
		verdict = &expr.Verdict{Kind: expr.VerdictGoto, Chain: chainReject}
	case Drop:
		verdict = &expr.Verdict{Kind: expr.VerdictDrop}
	}
	d.elems[set] = append(d.elems[set], nftables.SetElement{Key: key, VerdictData: verdict})
}

func (d *dispatch) ip(k IPPort, v Verdict) {
	a := k.IP.As4()
	key := []byte{a[0], a[1], a[2], a[3], k.Proto, 0, 0, 0, byte(k.Port >> 8), byte(k.Port), 0, 0}
	set := mapServiceIPs
	if v.Kind != Goto {
		set = mapNoEndpointIPs
	}
	d.put(set, key, v)
}

func (d *dispatch) np(k NodePort, v Verdict) {
	key := []byte{k.Proto, 0, 0, 0, byte(k.Port >> 8), byte(k.Port), 0, 0}
	set := mapNodePorts
	if v.Kind != Goto {
		set = mapNoEndpointNPs
	}
	d.put(set, key, v)
}

func (d *dispatch) collect(s *Service) {
	for k, v := range s.IPs {
		d.ip(k, v)
	}
	for k, v := range s.NodePorts {
		d.np(k, v)
	}
}

func (d *dispatch) emit(b *batch, add bool) {
	for _, set := range []string{mapServiceIPs, mapNoEndpointIPs, mapNodePorts, mapNoEndpointNPs} {
		b.elements(set, d.elems[set], add)
	}
}

func affinitySet(t *nftables.Table, name string, timeout time.Duration) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr,
		HasTimeout: true, Timeout: timeout, Dynamic: true}
}

func staticChainNames() []string {
	return []string{"nat-prerouting", "nat-output", "nat-postrouting", "filter-input", "filter-forward", "filter-output",
		chainServices, chainCheck, chainMark, chainMasquerade, chainReject}
}

// staticChains adds the base chains (hooks) and the fixed regular chains.
func (b *batch) staticChains() {
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) {
		c := b.ch(name)
		c.Type, c.Hooknum, c.Priority = typ, hook, prio
		b.c.AddChain(c)
		b.msgs++
	}
	dstnat, srcnat := nftables.ChainPriorityNATDest, nftables.ChainPriorityNATSource
	filter := nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)
	base("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, dstnat)
	base("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput, dstnat)
	base("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, srcnat)
	base("filter-input", nftables.ChainTypeFilter, nftables.ChainHookInput, filter)
	base("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward, filter)
	base("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, filter)
	for _, name := range []string{chainServices, chainCheck, chainMark, chainMasquerade, chainReject} {
		b.c.AddChain(b.ch(name))
		b.msgs++
	}
}

func jump(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func ne32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// dispatchExprs are `ip daddr . meta l4proto . th dport vmap @set` and
// `fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport
// vmap @set`.
func (b *batch) dispatchExprs() {
	for _, chain := range []string{chainServices, chainCheck} {
		ipMap, npMap := mapServiceIPs, mapNodePorts
		if chain == chainCheck {
			ipMap, npMap = mapNoEndpointIPs, mapNoEndpointNPs
		}
		b.addRule(chain,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
			&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: ipMap, SetID: b.maps[ipMap].ID, DestRegister: 0, IsDestRegSet: true},
		)
		b.addRule(chain,
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(unix.RTN_LOCAL)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: npMap, SetID: b.maps[npMap].ID, DestRegister: 0, IsDestRegSet: true},
		)
	}
}

// staticRules writes the fixed chains' rules.
func (b *batch) staticRules() {
	b.addRule("nat-prerouting", jump(chainServices))
	b.addRule("nat-output", jump(chainServices))
	b.addRule("nat-postrouting", jump(chainMasquerade))
	ctNew := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(expr.CtStateBitNEW), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
		jump(chainCheck),
	}
	for _, c := range []string{"filter-input", "filter-forward", "filter-output"} {
		b.addRule(c, ctNew...)
	}
	b.dispatchExprs()
	// meta mark set meta mark | 0x4000
	b.addRule(chainMark,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^uint32(masqMark)), Xor: ne32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
	// meta mark & 0x4000 == 0 return; meta mark set meta mark ^ 0x4000; masquerade
	b.addRule(chainMasquerade,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(masqMark), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0)},
		&expr.Verdict{Kind: expr.VerdictReturn})
	b.addRule(chainMasquerade,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^uint32(0)), Xor: ne32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Masq{})
	b.addRule(chainReject,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	b.addRule(chainReject, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}) // port unreachable
}

// rules writes one service-owned chain's rules.
func (b *batch) rules(chain string, rules []Rule) {
	for _, r := range rules {
		switch r.Kind {
		case RuleMasq:
			b.addRule(chain, jump(chainMark))
		case RuleHairpin:
			a := r.IP.As4()
			b.addRule(chain,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
				jump(chainMark))
		case RuleAffinityCheck:
			b.addRule(chain,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: r.Set},
				&expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target})
		case RuleAffinityUpdate:
			b.addRule(chain,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Dynset{SrcRegKey: 1, SetName: r.Set, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: r.Timeout})
		case RuleGoto:
			b.addRule(chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target})
		case RuleBalance:
			// Like iptables' statistic chains: rule i draws its own
			// random number and matches with probability 1/(N-i), which
			// makes every target equally likely, with no set to name or
			// validate per service.
			for i, t := range r.Targets {
				if i == len(r.Targets)-1 {
					b.addRule(chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: t})
					break
				}
				b.addRule(chain,
					&expr.Numgen{Register: 1, Modulus: uint32(len(r.Targets) - i), Type: unix.NFT_NG_RANDOM},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0)},
					&expr.Verdict{Kind: expr.VerdictGoto, Chain: t})
			}
		case RuleDNAT:
			a := r.IP.As4()
			b.addRule(chain,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}},
				&expr.Immediate{Register: 1, Data: a[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.Port)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
		}
	}
}

// Cleanup deletes the proxy's table (and nothing else).
func (a *Applier) Cleanup() error {
	b, err := a.newBatch()
	if err != nil {
		return err
	}
	a.applied, a.synced = nil, false
	if _, err := b.c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err != nil {
		return nil // no table
	}
	b.c.DelTable(b.t)
	b.msgs++
	return b.flush()
}
