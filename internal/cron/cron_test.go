package cron

import (
	"strings"
	"testing"
	"time"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		spec, want string
	}{
		{"", "empty spec string"},
		{"* * * *", "expected exactly 5 fields, found 4: [* * * *]"},
		{"* * * * * *", "expected exactly 5 fields, found 6"},
		{"60 * * * *", "end of range (60) above maximum (59): 60"},
		{"* 24 * * *", "end of range (24) above maximum (23): 24"},
		{"* * 0 * *", "beginning of range (0) below minimum (1): 0"},
		{"* * * 13 *", "end of range (13) above maximum (12): 13"},
		{"* * * * 7", "end of range (7) above maximum (6): 7"},
		{"5-3 * * * *", "beginning of range (5) beyond end of range (3): 5-3"},
		{"*/0 * * * *", "step of range should be a positive number: */0"},
		{"1-2-3 * * * *", "too many hyphens: 1-2-3"},
		{"*/2/3 * * * *", "too many slashes: */2/3"},
		{"x * * * *", "failed to parse int from x"},
		{"@fortnightly", "unrecognized descriptor: @fortnightly"},
		{"@every forever", "failed to parse duration @every forever"},
		{"TZ=Nowhere/City * * * * *", "provided bad location Nowhere/City"},
		{"TZ=UTC", "provided bad location UTC"},
		{"* * * foo *", "failed to parse int from foo"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.spec)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error %q", tt.spec, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %q, want it to contain %q", tt.spec, err, tt.want)
		}
	}
}

func TestNext(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		spec, from, want string
	}{
		{"* * * * *", "2024-03-01 10:00", "2024-03-01 10:01"},
		{"*/15 * * * *", "2024-03-01 10:01", "2024-03-01 10:15"},
		{"0 * * * *", "2024-03-01 10:00", "2024-03-01 11:00"},
		{"@hourly", "2024-03-01 10:30", "2024-03-01 11:00"},
		{"@daily", "2024-03-01 10:30", "2024-03-02 00:00"},
		{"@midnight", "2024-12-31 23:59", "2025-01-01 00:00"},
		{"@weekly", "2024-03-01 10:30", "2024-03-03 00:00"}, // a Sunday
		{"@monthly", "2024-03-01 10:30", "2024-04-01 00:00"},
		{"@yearly", "2024-03-01 10:30", "2025-01-01 00:00"},
		{"@annually", "2024-03-01 10:30", "2025-01-01 00:00"},
		{"30 2 * * mon-fri", "2024-03-01 10:30", "2024-03-04 02:30"}, // Fri -> Mon
		{"0 0 29 feb *", "2024-03-01 00:00", "2028-02-29 00:00"},
		{"0 12 1,15 * *", "2024-03-02 00:00", "2024-03-15 12:00"},
		{"0 0 1-7 * 1", "2024-03-02 00:00", "2024-03-03 00:00"}, // day of month or Sunday-Monday: either matches
		{"5/20 * * * *", "2024-03-01 10:06", "2024-03-01 10:25"},
		{"0 9 * jan,JUL ?", "2024-03-01 00:00", "2024-07-01 09:00"},
		{"CRON_TZ=UTC 0 6 * * *", "2024-03-01 07:00", "2024-03-02 06:00"},
		{"TZ=America/New_York 0 6 * * *", "2024-03-01 07:00", "2024-03-01 11:00"},
		{"@every 90m", "2024-03-01 07:00", "2024-03-01 08:30"},
	}
	for _, tt := range tests {
		s, err := Parse(tt.spec)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.spec, err)
			continue
		}
		if got := s.Next(utc(tt.from)); !got.Equal(utc(tt.want)) {
			t.Errorf("%q.Next(%s) = %s, want %s", tt.spec, tt.from, got.Format("2006-01-02 15:04 Mon"), tt.want)
		}
	}
}
