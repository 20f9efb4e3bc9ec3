package expectations

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestStore(t *testing.T) {
	type step struct {
		do   func(s *Store)
		want bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"unknown key is satisfied", []step{{func(*Store) {}, true}}},
		{"creations pending until all observed", []step{
			{func(s *Store) { s.ExpectCreations("a", 2) }, false},
			{func(s *Store) { s.CreationObserved("a") }, false},
			{func(s *Store) { s.CreationObserved("a") }, true},
			{func(s *Store) { s.CreationObserved("a") }, true},
		}},
		{"a deletion counts once", []step{
			{func(s *Store) { s.ExpectDeletions("a", []string{"ns/p1", "ns/p2"}) }, false},
			{func(s *Store) { s.DeletionObserved("a", "ns/p1") }, false},
			{func(s *Store) { s.DeletionObserved("a", "ns/p1") }, false},
			{func(s *Store) { s.DeletionObserved("a", "ns/p2") }, true},
		}},
		{"other keys are independent", []step{
			{func(s *Store) { s.ExpectCreations("a", 1) }, false},
			{func(s *Store) { s.CreationObserved("b") }, false},
		}},
		{"expired after the TTL", []step{
			{func(s *Store) { s.ExpectCreations("a", 1) }, false},
			{func(s *Store) { s.clock.(*clocktesting.FakePassiveClock).SetTime(time.Unix(1000, 0).Add(DefaultTTL)) }, false},
			{func(s *Store) { s.clock.(*clocktesting.FakePassiveClock).SetTime(time.Unix(1001, 0).Add(DefaultTTL)) }, true},
		}},
		{"forget clears", []step{
			{func(s *Store) { s.ExpectCreations("a", 3) }, false},
			{func(s *Store) { s.Forget("a") }, true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(clocktesting.NewFakePassiveClock(time.Unix(1000, 0)), 0)
			for i, st := range tt.steps {
				st.do(s)
				if got := s.Satisfied("a"); got != st.want {
					t.Fatalf("step %d: Satisfied = %v, want %v", i, got, st.want)
				}
			}
		})
	}
}
