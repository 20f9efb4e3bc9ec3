package proxy

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TableName is the proxy's shared table (family ip): masquerading and the
// no-endpoint checks. The services' dispatch maps and chains live in
// Shards tables named TableName-00, TableName-01, …; the proxy never
// touches any other table.
//
// Sharding bounds the kernel's work per transaction: a commit that adds
// jumps, gotos or NAT rules re-validates the whole jump graph of every
// table it touched (nf_tables_validate walks only tables whose
// validate_state is NEED), so an incremental change pays for its own
// shard, about 1/Shards of the services, not for all of them.
const TableName = "skiff-proxy"

// Shards is how many tables hold the services (by a hash of the
// Service's key).
const Shards = 16

// ShardTable is the name of the table that holds the service with key
// "namespace/name".
func ShardTable(key string) string { return shardName(shardOf(key)) }

func shardOf(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % Shards)
}

func shardName(i int) string { return fmt.Sprintf("%s-%02d", TableName, i) }

// isProxyTable reports whether name is the shared table or a shard.
func isProxyTable(name string) bool {
	return name == TableName || strings.HasPrefix(name, TableName+"-")
}

// Names of the fixed chains and maps of the tables.
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
	masqMark         = 0x4000
	elementsPerMsg   = 256
)

// Applier programs a Model into the tables through netlink, one
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

// table is one table of the transaction: its chains and maps by name.
type table struct {
	t     *nftables.Table
	chain map[string]*nftables.Chain
	maps  map[string]*nftables.Set
}

// batch is one transaction being built.
type batch struct {
	c      *nftables.Conn
	msgs   int
	err    error
	shared *table
	shards [Shards]*table
}

func (a *Applier) newBatch() (*batch, error) {
	b := &batch{}
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
	newTable := func(name string, maps map[string]nftables.SetDatatype) *table {
		t := &table{t: &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4},
			chain: map[string]*nftables.Chain{}, maps: map[string]*nftables.Set{}}
		for m, key := range maps {
			t.maps[m] = &nftables.Set{Table: t.t, Name: m, IsMap: true, Concatenation: true, KeyType: key, DataType: nftables.TypeVerdict}
		}
		return t
	}
	b.shared = newTable(TableName, map[string]nftables.SetDatatype{mapNoEndpointIPs: ipKey, mapNoEndpointNPs: npKey})
	for i := range b.shards {
		b.shards[i] = newTable(shardName(i), map[string]nftables.SetDatatype{mapServiceIPs: ipKey, mapNodePorts: npKey})
	}
	return b, nil
}

// tables is the shared table, then the shards.
func (b *batch) tables() []*table { return append([]*table{b.shared}, b.shards[:]...) }

func (t *table) ch(name string) *nftables.Chain {
	c, ok := t.chain[name]
	if !ok {
		c = &nftables.Chain{Name: name, Table: t.t}
		t.chain[name] = c
	}
	return c
}

// mapNames is the table's dispatch maps, in a fixed order.
func (t *table) mapNames() []string {
	var out []string
	for _, name := range []string{mapServiceIPs, mapNoEndpointIPs, mapNodePorts, mapNoEndpointNPs} {
		if _, ok := t.maps[name]; ok {
			out = append(out, name)
		}
	}
	return out
}

func (b *batch) addRule(t *table, chain string, exprs ...expr.Any) {
	b.msgs++
	b.c.AddRule(&nftables.Rule{Table: t.t, Chain: t.ch(chain), Exprs: exprs})
}

func (b *batch) addChain(t *table, name string) {
	b.c.AddChain(t.ch(name))
	b.msgs++
}

func (b *batch) flushChain(t *table, name string) {
	b.c.FlushChain(t.ch(name))
	b.msgs++
}

func (b *batch) delChain(t *table, name string) {
	b.c.DelChain(t.ch(name))
	b.msgs++
}

func (b *batch) addSet(s *nftables.Set, elems []nftables.SetElement) {
	b.msgs += 2
	if err := b.c.AddSet(s, elems); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *batch) elements(s *nftables.Set, elems []nftables.SetElement, add bool) {
	for len(elems) > 0 {
		n := min(len(elems), elementsPerMsg)
		var err error
		if add {
			err = b.c.SetAddElements(s, elems[:n])
		} else {
			err = b.c.SetDeleteElements(s, elems[:n])
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
// all the tables with m in one transaction without deleting them, so
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

// existing is what the kernel has of one table.
type existing struct {
	table  bool
	chains map[string]bool
	sets   map[string]bool
}

// list reads which of the proxy's tables exist and their chains and
// named sets.
func (b *batch) list() (map[string]*existing, error) {
	out := map[string]*existing{}
	tables, err := b.c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("proxy: list tables: %w", err)
	}
	for _, t := range tables {
		if isProxyTable(t.Name) {
			out[t.Name] = &existing{table: true, chains: map[string]bool{}, sets: map[string]bool{}}
		}
	}
	if len(out) == 0 {
		return out, nil
	}
	chains, err := b.c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("proxy: list chains: %w", err)
	}
	for _, c := range chains {
		if e := out[c.Table.Name]; e != nil {
			e.chains[c.Name] = true
		}
	}
	for name, e := range out {
		sets, err := b.c.GetSets(&nftables.Table{Name: name, Family: nftables.TableFamilyIPv4})
		if err != nil {
			return nil, fmt.Errorf("proxy: list sets of %s: %w", name, err)
		}
		for _, s := range sets {
			if !s.Anonymous {
				e.sets[s.Name] = true
			}
		}
	}
	return out, nil
}

// full reconciles every table with m in one transaction.
func (a *Applier) full(b *batch, m Model) error {
	have, err := b.list()
	if err != nil {
		return err
	}
	none := &existing{chains: map[string]bool{}, sets: map[string]bool{}}
	if e := have[TableName]; e != nil && e.sets[mapServiceIPs] {
		// the single-table layout of earlier versions: replace it (its
		// services move to the shards in this same transaction)
		b.c.DelTable(b.shared.t)
		b.msgs++
		have[TableName] = none
	}
	var byShard [Shards][]*Service
	for k, svc := range m {
		i := shardOf(k)
		byShard[i] = append(byShard[i], svc)
	}
	var add dispatch
	for k, svc := range m {
		add.collect(b, svc, b.shards[shardOf(k)])
	}
	b.reconcile(b.shared, have[TableName], none, nil, sharedChainNames(), &add)
	for i, t := range b.shards {
		b.reconcile(t, have[t.t.Name], none, byShard[i], shardChainNames(), &add)
	}
	return b.flush()
}

// reconcile writes table t (which the kernel has as e, or not at all)
// with the services svcs and the fixed chains static.
func (b *batch) reconcile(t *table, e, none *existing, svcs []*Service, static []string, add *dispatch) {
	if e == nil {
		e = none
	}
	b.c.AddTable(t.t)
	b.msgs++
	// maps and sets first: rules refer to them
	for _, name := range t.mapNames() {
		b.addSet(t.maps[name], nil)
		if e.sets[name] {
			b.c.FlushSet(t.maps[name])
			b.msgs++
		}
	}
	for _, svc := range svcs {
		for name, timeout := range svc.AffinitySets {
			if !e.sets[name] { // keep the clients it remembers
				b.addSet(affinitySet(t.t, name, timeout), nil)
			}
		}
	}
	// every chain exists before any rule jumps to it
	b.staticChains(t)
	for _, svc := range svcs {
		for name := range svc.Chains {
			if !e.chains[name] {
				b.addChain(t, name)
			}
		}
	}
	// chain names are content-addressed (see BuildService): a chain the
	// table already has holds the wanted rules and stays as it is
	keep := map[string]bool{}
	for _, svc := range svcs {
		for name := range svc.Chains {
			if e.chains[name] {
				keep[name] = true
			}
		}
	}
	for name := range e.chains {
		if !keep[name] {
			b.flushChain(t, name)
		}
	}
	b.staticRules(t)
	for _, svc := range svcs {
		for name, rules := range svc.Chains {
			if !keep[name] {
				b.rules(t, name, rules)
			}
		}
	}
	add.emit(b, t, true)
	// what the table has that m does not: flushed above, deleted now
	wantChains, wantSets := map[string]bool{}, map[string]bool{}
	for _, name := range static {
		wantChains[name] = true
	}
	for _, svc := range svcs {
		for name := range svc.Chains {
			wantChains[name] = true
		}
		for name := range svc.AffinitySets {
			wantSets[name] = true
		}
	}
	for name := range e.chains {
		if !wantChains[name] {
			b.delChain(t, name)
		}
	}
	for name := range e.sets {
		if _, isMap := t.maps[name]; !isMap && !wantSets[name] {
			b.c.DelSet(&nftables.Set{Table: t.t, Name: name})
			b.msgs++
		}
	}
}

// incremental rewrites the services whose entry changed since the last
// Apply, each in its shard.
func (a *Applier) incremental(b *batch, m Model) error {
	var del, add dispatch
	type ref struct {
		t    *table
		name string
	}
	var staleChains, staleSets []ref
	type rewrite struct {
		t     *table
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
		t := b.shards[shardOf(k)]
		if old == nil {
			old = &Service{}
		}
		if cur == nil {
			cur = &Service{}
		}
		for name, timeout := range cur.AffinitySets {
			if _, ok := old.AffinitySets[name]; !ok {
				b.addSet(affinitySet(t.t, name, timeout), nil)
			}
		}
		for name, rules := range cur.Chains {
			prev, ok := old.Chains[name]
			switch {
			case !ok:
				b.addChain(t, name)
				rewrites = append(rewrites, rewrite{t: t, name: name, rules: rules})
			case !rulesEqual(prev, rules):
				rewrites = append(rewrites, rewrite{t: t, name: name, rules: rules, flush: true})
			}
		}
		for name := range old.Chains {
			if _, ok := cur.Chains[name]; !ok {
				staleChains = append(staleChains, ref{t, name})
			}
		}
		for name := range old.AffinitySets {
			if _, ok := cur.AffinitySets[name]; !ok {
				staleSets = append(staleSets, ref{t, name})
			}
		}
		for ip, v := range old.IPs {
			if nv, ok := cur.IPs[ip]; !ok || nv != v {
				del.ip(b, t, ip, v)
			}
		}
		for ip, v := range cur.IPs {
			if ov, ok := old.IPs[ip]; !ok || ov != v {
				add.ip(b, t, ip, v)
			}
		}
		for np, v := range old.NodePorts {
			if nv, ok := cur.NodePorts[np]; !ok || nv != v {
				del.np(b, t, np, v)
			}
		}
		for np, v := range cur.NodePorts {
			if ov, ok := old.NodePorts[np]; !ok || ov != v {
				add.np(b, t, np, v)
			}
		}
	}
	if changed == 0 {
		return nil
	}
	for _, r := range rewrites {
		if r.flush {
			b.flushChain(r.t, r.name)
		}
		b.rules(r.t, r.name, r.rules)
	}
	for _, t := range b.tables() {
		del.emit(b, t, false)
	}
	for _, t := range b.tables() {
		add.emit(b, t, true)
	}
	for _, r := range staleChains {
		b.flushChain(r.t, r.name)
	}
	for _, r := range staleChains {
		b.delChain(r.t, r.name)
	}
	for _, r := range staleSets {
		b.c.DelSet(&nftables.Set{Table: r.t.t, Name: r.name})
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

// dispatch collects map elements per table and map: gotos to a
// service's chains go to its shard's maps, rejects and drops to the
// shared table's no-endpoint maps.
type dispatch struct {
	elems map[*table]map[string][]nftables.SetElement
	seen  map[string]bool
}

func (d *dispatch) put(t *table, set string, key []byte, v Verdict) {
	if d.elems == nil {
		d.elems, d.seen = map[*table]map[string][]nftables.SetElement{}, map[string]bool{}
	}
	// two services claiming one destination (a shared external IP): the
	// first keeps it, as a duplicate would fail the whole transaction
	k := t.t.Name + "/" + set + "/" + string(key)
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
	if d.elems[t] == nil {
		d.elems[t] = map[string][]nftables.SetElement{}
	}
	d.elems[t][set] = append(d.elems[t][set], nftables.SetElement{Key: key, VerdictData: verdict})
}

func (d *dispatch) ip(b *batch, shard *table, k IPPort, v Verdict) {
	a := k.IP.As4()
	key := []byte{a[0], a[1], a[2], a[3], k.Proto, 0, 0, 0, byte(k.Port >> 8), byte(k.Port), 0, 0}
	if v.Kind == Goto {
		d.put(shard, mapServiceIPs, key, v)
	} else {
		d.put(b.shared, mapNoEndpointIPs, key, v)
	}
}

func (d *dispatch) np(b *batch, shard *table, k NodePort, v Verdict) {
	key := []byte{k.Proto, 0, 0, 0, byte(k.Port >> 8), byte(k.Port), 0, 0}
	if v.Kind == Goto {
		d.put(shard, mapNodePorts, key, v)
	} else {
		d.put(b.shared, mapNoEndpointNPs, key, v)
	}
}

func (d *dispatch) collect(b *batch, s *Service, shard *table) {
	for k, v := range s.IPs {
		d.ip(b, shard, k, v)
	}
	for k, v := range s.NodePorts {
		d.np(b, shard, k, v)
	}
}

func (d *dispatch) emit(b *batch, t *table, add bool) {
	for _, set := range t.mapNames() {
		b.elements(t.maps[set], d.elems[t][set], add)
	}
}

func affinitySet(t *nftables.Table, name string, timeout time.Duration) *nftables.Set {
	return &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeIPAddr,
		HasTimeout: true, Timeout: timeout, Dynamic: true}
}

func sharedChainNames() []string {
	return []string{"nat-postrouting", "filter-input", "filter-forward", "filter-output", chainCheck, chainMasquerade, chainReject}
}

func shardChainNames() []string {
	return []string{"nat-prerouting", "nat-output", chainServices, chainMark}
}

// staticChains adds t's base chains (hooks) and fixed regular chains.
func (b *batch) staticChains(t *table) {
	base := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) {
		c := t.ch(name)
		c.Type, c.Hooknum, c.Priority = typ, hook, prio
		b.addChain(t, name)
	}
	dstnat, srcnat := nftables.ChainPriorityNATDest, nftables.ChainPriorityNATSource
	filter := nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 10)
	if t == b.shared {
		base("nat-postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, srcnat)
		base("filter-input", nftables.ChainTypeFilter, nftables.ChainHookInput, filter)
		base("filter-forward", nftables.ChainTypeFilter, nftables.ChainHookForward, filter)
		base("filter-output", nftables.ChainTypeFilter, nftables.ChainHookOutput, filter)
		for _, name := range []string{chainCheck, chainMasquerade, chainReject} {
			b.addChain(t, name)
		}
		return
	}
	base("nat-prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, dstnat)
	base("nat-output", nftables.ChainTypeNAT, nftables.ChainHookOutput, dstnat)
	for _, name := range []string{chainServices, chainMark} {
		b.addChain(t, name)
	}
}

func jump(chain string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func ne32(v uint32) []byte { return binaryutil.NativeEndian.PutUint32(v) }

// dispatchExprs are `ip daddr . meta l4proto . th dport vmap @set` and
// `fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport
// vmap @set`.
// In a shard the chain is services with its maps, in the shared table
// endpoints-check with the no-endpoint maps.
func (b *batch) dispatchExprs(t *table) {
	chain, ipMap, npMap := chainServices, mapServiceIPs, mapNodePorts
	if t == b.shared {
		chain, ipMap, npMap = chainCheck, mapNoEndpointIPs, mapNoEndpointNPs
	}
	{
		b.addRule(t, chain,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
			&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: ipMap, SetID: t.maps[ipMap].ID, DestRegister: 0, IsDestRegSet: true},
		)
		b.addRule(t, chain,
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(unix.RTN_LOCAL)},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: npMap, SetID: t.maps[npMap].ID, DestRegister: 0, IsDestRegSet: true},
		)
	}
}

// staticRules writes t's fixed chains' rules.
func (b *batch) staticRules(t *table) {
	b.dispatchExprs(t)
	if t != b.shared {
		b.addRule(t, "nat-prerouting", jump(chainServices))
		b.addRule(t, "nat-output", jump(chainServices))
		// meta mark set meta mark | 0x4000
		b.addRule(t, chainMark,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^uint32(masqMark)), Xor: ne32(masqMark)},
			&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1})
		return
	}
	b.addRule(t, "nat-postrouting", jump(chainMasquerade))
	ctNew := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(expr.CtStateBitNEW), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ne32(0)},
		jump(chainCheck),
	}
	for _, c := range []string{"filter-input", "filter-forward", "filter-output"} {
		b.addRule(t, c, ctNew...)
	}
	// meta mark & 0x4000 == 0 return; meta mark set meta mark ^ 0x4000; masquerade
	b.addRule(t, chainMasquerade,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(masqMark), Xor: ne32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0)},
		&expr.Verdict{Kind: expr.VerdictReturn})
	b.addRule(t, chainMasquerade,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ne32(^uint32(0)), Xor: ne32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Masq{})
	b.addRule(t, chainReject,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	b.addRule(t, chainReject, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}) // port unreachable
}

// rules writes one service-owned chain's rules.
func (b *batch) rules(t *table, chain string, rules []Rule) {
	for _, r := range rules {
		switch r.Kind {
		case RuleMasq:
			b.addRule(t, chain, jump(chainMark))
		case RuleHairpin:
			a := r.IP.As4()
			b.addRule(t, chain,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
				jump(chainMark))
		case RuleAffinityCheck:
			b.addRule(t, chain,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: r.Set},
				&expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target})
		case RuleAffinityUpdate:
			b.addRule(t, chain,
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Dynset{SrcRegKey: 1, SetName: r.Set, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: r.Timeout})
		case RuleGoto:
			b.addRule(t, chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: r.Target})
		case RuleBalance:
			// Like iptables' statistic chains: rule i draws its own
			// random number and matches with probability 1/(N-i), which
			// makes every target equally likely, with no set to name or
			// validate per service.
			for i, target := range r.Targets {
				if i == len(r.Targets)-1 {
					b.addRule(t, chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: target})
					break
				}
				b.addRule(t, chain,
					&expr.Numgen{Register: 1, Modulus: uint32(len(r.Targets) - i), Type: unix.NFT_NG_RANDOM},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ne32(0)},
					&expr.Verdict{Kind: expr.VerdictGoto, Chain: target})
			}
		case RuleDNAT:
			a := r.IP.As4()
			b.addRule(t, chain,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{r.Proto}},
				&expr.Immediate{Register: 1, Data: a[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.Port)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
		}
	}
}

// Cleanup deletes the proxy's tables (and nothing else).
func (a *Applier) Cleanup() error {
	b, err := a.newBatch()
	if err != nil {
		return err
	}
	a.applied, a.synced = nil, false
	tables, err := b.c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("proxy: list tables: %w", err)
	}
	for _, t := range tables {
		if isProxyTable(t.Name) {
			b.c.DelTable(t)
			b.msgs++
		}
	}
	if b.msgs == 0 {
		return nil
	}
	return b.flush()
}
