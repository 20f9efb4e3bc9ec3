// Package cron parses standard five-field cron schedules, as CronJob's
// spec.schedule uses them, and computes their activation times.
//
// The accepted syntax is that of the parser upstream Kubernetes uses:
// minute, hour, day of month, month and day of week fields with "*", "?",
// ranges ("1-5"), steps ("*/15", "3/10", "1-30/2"), lists ("1,5,9") and
// month and weekday names ("jan", "mon"); the descriptors @yearly,
// @annually, @monthly, @weekly, @daily, @midnight, @hourly and
// "@every <duration>"; and an optional "TZ=<zone> " or "CRON_TZ=<zone> "
// prefix. Error messages match upstream's so that API validation errors
// read the same.
package cron

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule is a parsed schedule.
type Schedule struct {
	// Location is the zone of a TZ= or CRON_TZ= prefix, nil without one
	// (activation times are then computed in the zone of the time passed
	// to Next).
	Location *time.Location
	// Every is the interval of an "@every" schedule; the bit fields are
	// unused when it is non-zero.
	Every time.Duration

	minute, hour, dom, month, dow uint64
}

// bounds describes one field.
type bounds struct {
	min, max uint
	names    map[string]uint
}

// starBit marks a field given as "*" or "?", which matters for the
// day-of-month / day-of-week rule.
const starBit = 1 << 63

var (
	minutes = bounds{0, 59, nil}
	hours   = bounds{0, 23, nil}
	doms    = bounds{1, 31, nil}
	months  = bounds{1, 12, map[string]uint{
		"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
		"jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
	}}
	dows = bounds{0, 6, map[string]uint{
		"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
	}}
)

// Parse parses a schedule.
func Parse(spec string) (*Schedule, error) {
	if spec == "" {
		return nil, fmt.Errorf("empty spec string")
	}
	var loc *time.Location
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		eq := strings.Index(spec, "=")
		sp := strings.Index(spec, " ")
		if sp < 0 {
			return nil, fmt.Errorf("provided bad location %s: missing schedule", spec[eq+1:])
		}
		name := spec[eq+1 : sp]
		l, err := time.LoadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("provided bad location %s: %w", name, err)
		}
		loc = l
		spec = strings.TrimSpace(spec[sp:])
	}
	if strings.HasPrefix(spec, "@") {
		s, err := parseDescriptor(spec)
		if err != nil {
			return nil, err
		}
		s.Location = loc
		return s, nil
	}
	fields := strings.Fields(spec)
	if len(fields) != 5 {
		return nil, fmt.Errorf("expected exactly 5 fields, found %d: %s", len(fields), fields)
	}
	s := &Schedule{Location: loc}
	for i, f := range []struct {
		dst *uint64
		b   bounds
	}{{&s.minute, minutes}, {&s.hour, hours}, {&s.dom, doms}, {&s.month, months}, {&s.dow, dows}} {
		bits, err := parseField(fields[i], f.b)
		if err != nil {
			return nil, err
		}
		*f.dst = bits
	}
	return s, nil
}

func parseDescriptor(d string) (*Schedule, error) {
	all := func(b bounds) uint64 { return bitRange(b.min, b.max, 1) | starBit }
	s := &Schedule{minute: 1 << 0, hour: 1 << 0, dom: 1 << 1, month: all(months), dow: all(dows)}
	switch d {
	case "@yearly", "@annually":
		s.month = 1 << 1
	case "@monthly":
	case "@weekly":
		s.dom, s.dow = all(doms), 1<<0
	case "@daily", "@midnight":
		s.dom = all(doms)
	case "@hourly":
		s.dom, s.hour = all(doms), all(hours)
	default:
		const every = "@every "
		if !strings.HasPrefix(d, every) {
			return nil, fmt.Errorf("unrecognized descriptor: %s", d)
		}
		dur, err := time.ParseDuration(d[len(every):])
		if err != nil {
			return nil, fmt.Errorf("failed to parse duration %s: %w", d, err)
		}
		if dur < time.Second {
			dur = time.Second
		}
		return &Schedule{Every: dur - time.Duration(dur.Nanoseconds())%time.Second}, nil
	}
	return s, nil
}

// parseField parses a comma-separated list of ranges.
func parseField(f string, b bounds) (uint64, error) {
	var bits uint64
	for _, expr := range strings.FieldsFunc(f, func(r rune) bool { return r == ',' }) {
		bit, err := parseRange(expr, b)
		if err != nil {
			return 0, err
		}
		bits |= bit
	}
	return bits, nil
}

// parseRange parses "*", "?", "N", "N-M", each optionally followed by
// "/step".
func parseRange(expr string, b bounds) (uint64, error) {
	rangeAndStep := strings.Split(expr, "/")
	lowHigh := strings.Split(rangeAndStep[0], "-")
	single := len(lowHigh) == 1
	var start, end, step uint
	var extra uint64
	var err error
	if lowHigh[0] == "*" || lowHigh[0] == "?" {
		start, end, extra = b.min, b.max, starBit
	} else {
		if start, err = parseValue(lowHigh[0], b.names); err != nil {
			return 0, err
		}
		switch len(lowHigh) {
		case 1:
			end = start
		case 2:
			if end, err = parseValue(lowHigh[1], b.names); err != nil {
				return 0, err
			}
		default:
			return 0, fmt.Errorf("too many hyphens: %s", expr)
		}
	}
	switch len(rangeAndStep) {
	case 1:
		step = 1
	case 2:
		if step, err = parseInt(rangeAndStep[1]); err != nil {
			return 0, err
		}
		if single {
			end = b.max // "N/step" means "N-max/step"
		}
		if step > 1 {
			extra = 0
		}
	default:
		return 0, fmt.Errorf("too many slashes: %s", expr)
	}
	switch {
	case start < b.min:
		return 0, fmt.Errorf("beginning of range (%d) below minimum (%d): %s", start, b.min, expr)
	case end > b.max:
		return 0, fmt.Errorf("end of range (%d) above maximum (%d): %s", end, b.max, expr)
	case start > end:
		return 0, fmt.Errorf("beginning of range (%d) beyond end of range (%d): %s", start, end, expr)
	case step == 0:
		return 0, fmt.Errorf("step of range should be a positive number: %s", expr)
	}
	return bitRange(start, end, step) | extra, nil
}

func parseValue(s string, names map[string]uint) (uint, error) {
	if v, ok := names[strings.ToLower(s)]; ok {
		return v, nil
	}
	return parseInt(s)
}

func parseInt(s string) (uint, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("failed to parse int from %s: %w", s, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("negative number (%d) not allowed: %s", n, s)
	}
	return uint(n), nil
}

// bitRange sets the bits start, start+step, ... up to end. start and end
// are at most 59 (checked by the callers).
func bitRange(start, end, step uint) uint64 {
	if step == 1 {
		return ^(^uint64(0) << (end + 1)) & (^uint64(0) << start)
	}
	var bits uint64
	for i := start; i <= end; i += step {
		bits |= 1 << i
	}
	return bits
}

// Next returns the first activation time strictly after t, or the zero
// time when the schedule never fires (such as "0 0 30 2 *") within five
// years.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.Every > 0 {
		return t.Add(s.Every - time.Duration(t.Nanosecond()))
	}
	orig := t.Location()
	if s.Location != nil {
		t = t.In(s.Location)
	}
	loc := t.Location()
	// Start at the next whole minute.
	t = t.Add(time.Minute - time.Duration(t.Second())*time.Second - time.Duration(t.Nanosecond()))
	added := false
	limit := t.Year() + 5

wrap:
	if t.Year() > limit {
		return time.Time{}
	}
	for 1<<uint(t.Month())&s.month == 0 {
		if !added {
			added = true
			t = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, loc)
		}
		t = t.AddDate(0, 1, 0)
		if t.Month() == time.January {
			goto wrap
		}
	}
	for !s.dayMatches(t) {
		if !added {
			added = true
			t = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		}
		t = t.AddDate(0, 0, 1)
		// A daylight-saving change may leave t off midnight.
		if t.Hour() != 0 {
			if t.Hour() > 12 {
				t = t.Add(time.Duration(24-t.Hour()) * time.Hour)
			} else {
				t = t.Add(-time.Duration(t.Hour()) * time.Hour)
			}
		}
		if t.Day() == 1 {
			goto wrap
		}
	}
	for 1<<uint(t.Hour())&s.hour == 0 {
		if !added {
			added = true
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), 0, 0, 0, loc)
		}
		t = t.Add(time.Hour)
		if t.Hour() == 0 {
			goto wrap
		}
	}
	for 1<<uint(t.Minute())&s.minute == 0 {
		if !added {
			added = true
			t = t.Truncate(time.Minute)
		}
		t = t.Add(time.Minute)
		if t.Minute() == 0 {
			goto wrap
		}
	}
	return t.In(orig)
}

// dayMatches applies cron's day rule: when both day of month and day of
// week are restricted, either may match.
func (s *Schedule) dayMatches(t time.Time) bool {
	domMatch := 1<<uint(t.Day())&s.dom > 0
	dowMatch := 1<<uint(t.Weekday())&s.dow > 0
	if s.dom&starBit > 0 || s.dow&starBit > 0 {
		return domMatch && dowMatch
	}
	return domMatch || dowMatch
}
