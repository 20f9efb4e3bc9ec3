// Package store keeps the cluster's objects in etcd: an embedded etcd server
// by default, or an external etcd cluster. It deals in keys and bytes; the
// API server decides what the bytes mean. Only the API server imports it.
package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// Errors returned by Store methods; match them with errors.Is.
var (
	ErrNotFound  = errors.New("store: key not found")
	ErrExists    = errors.New("store: key already exists")
	ErrConflict  = errors.New("store: revision conflict")
	ErrCompacted = errors.New("store: revision compacted")
)

// Config says which etcd to use.
type Config struct {
	// DataDir holds the embedded etcd's data (DataDir/etcd). Unused when
	// Endpoints is set.
	DataDir string
	// Endpoints of an external etcd cluster; empty means embedded.
	Endpoints []string
	// CAFile, CertFile and KeyFile configure TLS to an external etcd.
	CAFile, CertFile, KeyFile string
	// CompactInterval is how often old revisions are compacted (default 5m);
	// each compaction keeps the history of the previous interval.
	CompactInterval time.Duration
	// Logger receives the store's logs.
	Logger *slog.Logger
	// Observe, when set, is told how long each etcd request took.
	Observe func(op string, d time.Duration)
}

// KV is one stored value with the revision that last modified it.
type KV struct {
	Key         string
	Value       []byte
	ModRevision int64
}

// Store is an etcd-backed key-value store with compare-and-swap writes.
type Store struct {
	cfg    Config
	client *clientv3.Client
	etcd   *embed.Etcd // nil when external
	log    *slog.Logger
	// closing is set once Close starts.
	closing atomic.Bool
}

// New connects to etcd, starting the embedded server when no endpoints are
// configured. Close releases it.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CompactInterval == 0 {
		cfg.CompactInterval = 5 * time.Minute
	}
	s := &Store{cfg: cfg, log: cfg.Logger}
	if len(cfg.Endpoints) == 0 {
		if err := s.startEmbedded(); err != nil {
			return nil, err
		}
		return s, nil
	}
	var tlsCfg *tls.Config
	if cfg.CAFile != "" || cfg.CertFile != "" {
		info := transport.TLSInfo{TrustedCAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS config: %w", err)
		}
		tlsCfg = c
	}
	client, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		Context:     ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd %v: %w", cfg.Endpoints, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := client.Get(pctx, "health-probe", clientv3.WithCountOnly()); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("etcd %v does not answer (is it running and reachable?): %w", cfg.Endpoints, err)
	}
	s.client = client
	return s, nil
}

func (s *Store) startEmbedded() error {
	dir, err := filepath.Abs(filepath.Join(s.cfg.DataDir, "etcd"))
	if err != nil {
		return fmt.Errorf("etcd data dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create etcd data dir: %w", err)
	}
	ec := embed.NewConfig()
	ec.Name = "skiff"
	ec.Dir = dir
	// The embedded etcd is reached in-process; its listeners are unix
	// sockets in the data dir so that it takes no TCP port.
	sock := func(name string) url.URL {
		return url.URL{Scheme: "unix", Path: filepath.Join(dir, name)}
	}
	for _, n := range []string{"client.sock", "peer.sock"} {
		_ = os.Remove(filepath.Join(dir, n))
	}
	ec.ListenClientUrls = []url.URL{sock("client.sock")}
	ec.AdvertiseClientUrls = ec.ListenClientUrls
	ec.ListenPeerUrls = []url.URL{sock("peer.sock")}
	ec.AdvertisePeerUrls = ec.ListenPeerUrls
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newEtcdLogger(s.log, &s.closing))
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return fmt.Errorf("start embedded etcd in %s: %w", dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd failed: %w", err)
	case <-time.After(60 * time.Second):
		e.Close()
		return errors.New("embedded etcd did not become ready in 60s")
	}
	s.etcd = e
	s.client = v3client.New(e.Server)
	return nil
}

// Close stops the client and the embedded server.
func (s *Store) Close() error {
	s.closing.Store(true)
	err := s.client.Close()
	if s.etcd != nil {
		s.etcd.Close()
	}
	return err
}

// Run compacts old revisions until ctx ends, keeping one interval of
// history so that watchers that fall behind briefly can resume.
func (s *Store) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.CompactInterval)
	defer t.Stop()
	var last int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rev, err := s.Revision(ctx)
		if err != nil {
			s.log.Warn("compaction: read revision", "err", err)
			continue
		}
		if last > 0 {
			if _, err := s.client.Compact(ctx, last); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Debug("compaction", "revision", last, "err", err)
			}
		}
		last = rev
	}
}

// Compact compacts the history up to rev (for tests and tools).
func (s *Store) Compact(ctx context.Context, rev int64) error {
	_, err := s.client.Compact(ctx, rev)
	return err
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.client.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// Get returns the value at key.
func (s *Store) Get(ctx context.Context, key string) (KV, error) {
	defer s.observe("get", time.Now())
	resp, err := s.client.Get(ctx, key)
	if err != nil {
		return KV{}, fmt.Errorf("get %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, ErrNotFound
	}
	kv := resp.Kvs[0]
	return KV{Key: key, Value: kv.Value, ModRevision: kv.ModRevision}, nil
}

// List returns up to limit (0: all) values under prefix with keys >= start
// (start "" means from the beginning), read at revision rev (0: latest).
// It returns the revision read and whether more keys follow.
func (s *Store) List(ctx context.Context, prefix, start string, limit int64, rev int64) ([]KV, int64, bool, error) {
	defer s.observe("list", time.Now())
	from := prefix
	if start != "" {
		from = start
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix))}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(limit))
	}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := s.client.Get(ctx, from, opts...)
	if err != nil {
		if isCompacted(err) {
			return nil, 0, false, ErrCompacted
		}
		return nil, 0, false, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = KV{Key: string(kv.Key), Value: kv.Value, ModRevision: kv.ModRevision}
	}
	return out, resp.Header.Revision, resp.More, nil
}

// Create stores value at key if the key does not exist and returns the new
// revision.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	defer s.observe("create", time.Now())
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(value))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, ErrExists
	}
	return resp.Header.Revision, nil
}

// Update replaces the value at key if its current modification revision is
// rev, and returns the new revision. On a mismatch it returns ErrConflict
// (or ErrNotFound when the key is gone) together with the current value.
func (s *Store) Update(ctx context.Context, key string, value []byte, rev int64) (int64, KV, error) {
	defer s.observe("update", time.Now())
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(value))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, KV{}, fmt.Errorf("update %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, currentKV(key, resp), conflictOrMissing(resp)
	}
	return resp.Header.Revision, KV{}, nil
}

// Delete removes key if its modification revision is rev and returns the
// revision of the deletion; errors as Update.
func (s *Store) Delete(ctx context.Context, key string, rev int64) (int64, KV, error) {
	defer s.observe("delete", time.Now())
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, KV{}, fmt.Errorf("delete %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, currentKV(key, resp), conflictOrMissing(resp)
	}
	return resp.Header.Revision, KV{}, nil
}

func currentKV(key string, resp *clientv3.TxnResponse) KV {
	if len(resp.Responses) == 0 {
		return KV{}
	}
	r := resp.Responses[0].GetResponseRange()
	if r == nil || len(r.Kvs) == 0 {
		return KV{}
	}
	return KV{Key: key, Value: r.Kvs[0].Value, ModRevision: r.Kvs[0].ModRevision}
}

func conflictOrMissing(resp *clientv3.TxnResponse) error {
	if currentKV("", resp).ModRevision == 0 {
		return ErrNotFound
	}
	return ErrConflict
}

// EventType says what happened to a key.
type EventType int

// Event types.
const (
	Put EventType = iota
	Deleted
	// Progress carries only a revision: everything up to it was delivered.
	Progress
)

// Event is one change seen by Watch.
type Event struct {
	Type     EventType
	KV       KV // for Deleted: Value is the previous value, ModRevision the deletion's revision
	Revision int64
	Created  bool // Put of a key that did not exist
	// Prev is the value before a Put (nil for a creation).
	Prev []byte
}

// Watch streams the changes under prefix after revision rev until ctx ends
// or the stream fails. The returned channel is closed then; the error
// function tells why (ErrCompacted when rev is too old).
func (s *Store) Watch(ctx context.Context, prefix string, rev int64) (<-chan []Event, func() error) {
	out := make(chan []Event, 64)
	var werr error
	ctx = clientv3.WithRequireLeader(ctx)
	wc := s.client.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	go func() {
		defer close(out)
		for {
			var resp clientv3.WatchResponse
			var ok bool
			select {
			case <-ctx.Done():
				return
			case resp, ok = <-wc:
			}
			if !ok {
				break
			}
			if err := resp.Err(); err != nil {
				if resp.CompactRevision > 0 {
					werr = ErrCompacted
				} else {
					werr = fmt.Errorf("watch %s: %w", prefix, err)
				}
				return
			}
			if resp.IsProgressNotify() {
				select {
				case out <- []Event{{Type: Progress, Revision: resp.Header.Revision}}:
				case <-ctx.Done():
					return
				}
				continue
			}
			batch := make([]Event, 0, len(resp.Events))
			for _, ev := range resp.Events {
				e := Event{Revision: ev.Kv.ModRevision}
				switch ev.Type {
				case clientv3.EventTypeDelete:
					e.Type = Deleted
					e.KV = KV{Key: string(ev.Kv.Key), ModRevision: ev.Kv.ModRevision}
					if ev.PrevKv != nil {
						e.KV.Value = ev.PrevKv.Value
					}
				default:
					e.Type = Put
					e.Created = ev.IsCreate()
					if ev.PrevKv != nil {
						e.Prev = ev.PrevKv.Value
					}
					e.KV = KV{Key: string(ev.Kv.Key), Value: ev.Kv.Value, ModRevision: ev.Kv.ModRevision}
				}
				batch = append(batch, e)
			}
			select {
			case out <- batch:
			case <-ctx.Done():
				return
			}
		}
		if werr == nil && ctx.Err() == nil {
			werr = errors.New("watch " + prefix + ": stream closed")
		}
	}()
	return out, func() error { return werr }
}

// RequestProgress asks etcd to send a progress notification on the watch
// streams of ctx, so that idle watchers learn the current revision.
func (s *Store) RequestProgress(ctx context.Context) error {
	return s.client.RequestProgress(clientv3.WithRequireLeader(ctx))
}

func isCompacted(err error) bool {
	return errors.Is(err, ErrCompacted) || errors.Is(err, rpctypes.ErrCompacted)
}

func (s *Store) observe(op string, start time.Time) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(op, time.Since(start))
	}
}

// OpType is the kind of one operation of a transaction.
type OpType int

// Operation types of Txn.
const (
	// OpCreate stores a value at a key that must not exist.
	OpCreate OpType = iota
	// OpUpdate replaces a value whose modification revision must be Rev.
	OpUpdate
	// OpDelete removes a key whose modification revision must be Rev.
	OpDelete
	// OpRemove removes a key whatever it holds (nothing when it is absent).
	OpRemove
)

// Op is one operation of a transaction.
type Op struct {
	Type  OpType
	Key   string
	Value []byte
	Rev   int64
}

// TxnError tells which operation of a failed transaction failed its
// condition; it unwraps to ErrExists, ErrConflict or ErrNotFound.
type TxnError struct {
	Index int
	Key   string
	Err   error
}

// Error says which operation failed and why.
func (e *TxnError) Error() string {
	return fmt.Sprintf("transaction operation %d on %s: %v", e.Index, e.Key, e.Err)
}

// Unwrap returns ErrExists, ErrConflict or ErrNotFound.
func (e *TxnError) Unwrap() error { return e.Err }

// Txn applies all ops atomically, or none when a condition fails, and
// returns the new revision. Ops must name distinct keys.
func (s *Store) Txn(ctx context.Context, ops ...Op) (int64, error) {
	defer s.observe("txn", time.Now())
	var cmps []clientv3.Cmp
	var then, els []clientv3.Op
	var checked []int
	for i, op := range ops {
		switch op.Type {
		case OpCreate:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(op.Key), "=", 0))
			then = append(then, clientv3.OpPut(op.Key, string(op.Value)))
		case OpUpdate:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(op.Key), "=", op.Rev))
			then = append(then, clientv3.OpPut(op.Key, string(op.Value)))
		case OpDelete:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(op.Key), "=", op.Rev))
			then = append(then, clientv3.OpDelete(op.Key))
		case OpRemove:
			then = append(then, clientv3.OpDelete(op.Key))
			continue
		default:
			return 0, fmt.Errorf("txn: unknown operation type %d", op.Type)
		}
		els = append(els, clientv3.OpGet(op.Key, clientv3.WithKeysOnly()))
		checked = append(checked, i)
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		return 0, fmt.Errorf("txn: %w", err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	for j, i := range checked {
		op := ops[i]
		var cur int64
		if r := resp.Responses[j].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
			cur = r.Kvs[0].ModRevision
		}
		switch {
		case op.Type == OpCreate && cur != 0:
			return 0, &TxnError{Index: i, Key: op.Key, Err: ErrExists}
		case op.Type != OpCreate && cur == 0:
			return 0, &TxnError{Index: i, Key: op.Key, Err: ErrNotFound}
		case op.Type != OpCreate && cur != op.Rev:
			return 0, &TxnError{Index: i, Key: op.Key, Err: ErrConflict}
		}
	}
	// a key changed between the transaction and its reads: report a conflict
	return 0, &TxnError{Index: -1, Err: ErrConflict}
}
