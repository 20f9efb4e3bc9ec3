// Package expectations records the creations and deletions a controller
// has asked the API server for but not yet seen through its informers, so
// that a controller acting on a stale cache does not create or delete
// twice. Expectations are satisfied by observed events or expire after a
// TTL (a lost watch event must not block a controller for ever).
package expectations

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// DefaultTTL is how long unobserved expectations block a controller; as
// upstream, five minutes.
const DefaultTTL = 5 * time.Minute

// Store holds the expectations of every controlling object, by key.
type Store struct {
	mu    sync.Mutex
	clock clock.PassiveClock
	ttl   time.Duration
	m     map[string]*entry
}

type entry struct {
	adds    int
	deletes map[string]struct{}
	at      time.Time
}

// New returns an empty store. A nil clock is the real clock; ttl 0 is
// DefaultTTL.
func New(c clock.PassiveClock, ttl time.Duration) *Store {
	if c == nil {
		c = clock.RealClock{}
	}
	if ttl == 0 {
		ttl = DefaultTTL
	}
	return &Store{clock: c, ttl: ttl, m: map[string]*entry{}}
}

// Satisfied reports whether the controller of key may act on its cache:
// nothing is pending, nothing was ever expected, or the expectations
// expired.
func (s *Store) Satisfied(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return true
	}
	if e.adds <= 0 && len(e.deletes) == 0 {
		return true
	}
	return s.clock.Since(e.at) > s.ttl
}

// ExpectCreations records that n creations were requested for key,
// replacing earlier expectations.
func (s *Store) ExpectCreations(key string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = &entry{adds: n, deletes: map[string]struct{}{}, at: s.clock.Now()}
}

// ExpectDeletions records that the objects with the given keys were asked
// to be deleted for key, replacing earlier expectations.
func (s *Store) ExpectDeletions(key string, objKeys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &entry{deletes: make(map[string]struct{}, len(objKeys)), at: s.clock.Now()}
	for _, k := range objKeys {
		e.deletes[k] = struct{}{}
	}
	s.m[key] = e
}

// CreationObserved lowers the pending creations of key by one (a watched
// creation arrived, or a requested one failed or was never sent).
func (s *Store) CreationObserved(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok && e.adds > 0 {
		e.adds--
	}
}

// DeletionObserved marks the deletion of objKey as seen (or failed); a
// deletion counts once however many events report it.
func (s *Store) DeletionObserved(key, objKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		delete(e.deletes, objKey)
	}
}

// Pending returns the creations and deletions key still waits for.
func (s *Store) Pending(key string) (adds, deletes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		return e.adds, len(e.deletes)
	}
	return 0, 0
}

// Forget drops the expectations of key (its object is gone).
func (s *Store) Forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}
