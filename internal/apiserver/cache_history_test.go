package apiserver

import "testing"

func TestTrimHistory(t *testing.T) {
	mk := func(n int) []cacheEvent {
		out := make([]cacheEvent, n)
		for i := range out {
			out[i].rv = int64(i + 1)
		}
		return out
	}
	for _, tc := range []struct {
		name            string
		have, history   int
		wantLen         int
		wantFloor       int64
		wantTrimmed     bool
		wantFirstRVLeft int64
	}{
		{name: "empty", have: 0, history: 10, wantLen: 0},
		{name: "below history", have: 9, history: 10, wantLen: 9, wantFirstRVLeft: 1},
		{name: "at history, slack 1", have: 10, history: 10, wantLen: 10, wantFirstRVLeft: 1},
		{name: "history plus slack", have: 11, history: 10, wantLen: 9, wantFloor: 2, wantTrimmed: true, wantFirstRVLeft: 3},
		{name: "history 1", have: 1, history: 1, wantLen: 0, wantFloor: 1, wantTrimmed: true},
		{name: "large, in slack", have: 1100, history: 1000, wantLen: 1100, wantFirstRVLeft: 1},
		{name: "large, trimmed to history-1", have: 1125, history: 1000, wantLen: 999, wantFloor: 126, wantTrimmed: true, wantFirstRVLeft: 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := mk(tc.have)
			full := ev[:cap(ev)]
			floor, trimmed := trimHistory(&ev, tc.history)
			if len(ev) != tc.wantLen || floor != tc.wantFloor || trimmed != tc.wantTrimmed {
				t.Fatalf("got len %d floor %d trimmed %v, want %d %d %v", len(ev), floor, trimmed, tc.wantLen, tc.wantFloor, tc.wantTrimmed)
			}
			if len(ev) > 0 && ev[0].rv != tc.wantFirstRVLeft {
				t.Fatalf("oldest kept rv %d, want %d", ev[0].rv, tc.wantFirstRVLeft)
			}
			for i := len(ev); i < len(full); i++ {
				if full[i].rv != 0 {
					t.Fatalf("dropped slot %d not cleared", i)
				}
			}
		})
	}
}
