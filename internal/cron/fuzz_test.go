package cron

import (
	"testing"
	"time"
)

// FuzzParse checks that parsing never panics and that a parsed schedule's
// next activation is after the start.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 1,15 jan-mar mon", "@hourly", "@every 1h30m",
		"TZ=UTC 0 0 * * *", "CRON_TZ=", "5/0 * * * *", "1-2-3 * * * *", "0 0 31 2 *", ",,, * * * *"} {
		f.Add(s)
	}
	start := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		if next := s.Next(start); !next.IsZero() && !next.After(start) {
			t.Fatalf("%q.Next(%s) = %s, not after the start", spec, start, next)
		}
	})
}
