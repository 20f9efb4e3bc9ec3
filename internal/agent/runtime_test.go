package agent

import (
	"testing"
	"time"
)

func TestRestartBackoff(t *testing.T) {
	cases := []struct {
		name     string
		restarts int32
		ran      time.Duration
		want     time.Duration
	}{
		{"the first exit restarts at once", 0, time.Second, 0},
		{"the second waits 10 s", 1, time.Second, 10 * time.Second},
		{"then doubling", 2, time.Second, 20 * time.Second},
		{"and doubling", 4, time.Second, 80 * time.Second},
		{"160 s", 5, time.Second, 160 * time.Second},
		{"then 5 min", 6, time.Second, 5 * time.Minute},
		{"and no more", 1000, time.Second, 5 * time.Minute},
		{"a run of 10 min keeps the back-off", 7, 10 * time.Minute, 5 * time.Minute},
		{"a longer run resets it", 7, 10*time.Minute + time.Second, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := RestartBackoff(tc.restarts, tc.ran); got != tc.want {
				t.Errorf("RestartBackoff(%d, %s) = %s, want %s", tc.restarts, tc.ran, got, tc.want)
			}
		})
	}
}
