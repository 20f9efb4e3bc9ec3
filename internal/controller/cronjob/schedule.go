package cronjob

import (
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/skiff-sh/skiff/internal/cron"
)

// tooManyMissed is upstream's bound on missed start times: past it the
// controller warns (clock skew, or a controller that was down for long)
// and starts only the most recent.
const tooManyMissed = 100

// nextDelta pads the requeue after a schedule time, as upstream, against
// clock skew between the controller and its timer.
const nextDelta = 100 * time.Millisecond

// errNeverFires is a schedule that parses but never fires (such as
// February 31st) or fires less than a second apart.
var errNeverFires = errors.New("time difference between two schedules is less than 1 second")

// unmet is the outcome of looking for the start time a CronJob missed.
type unmet struct {
	// earliest is when the search started: the last schedule time, or
	// the creation time, or the starting deadline.
	earliest time.Time
	// recent is the most recent start time at or before now, if any.
	recent *time.Time
	// missed counts (roughly, as upstream) the start times since earliest.
	missed int64
}

// mostRecent finds the most recent start time of cj at or before now.
// With deadline it starts no earlier than startingDeadlineSeconds ago.
func mostRecent(cj *batchv1.CronJob, sched *cron.Schedule, now time.Time, deadline bool) (unmet, error) {
	u := unmet{earliest: cj.CreationTimestamp.Time}
	if cj.Status.LastScheduleTime != nil {
		u.earliest = cj.Status.LastScheduleTime.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; deadline && d != nil {
		if at := now.Add(-time.Duration(*d) * time.Second); at.After(u.earliest) {
			u.earliest = at
		}
	}
	t1 := sched.Next(u.earliest)
	if t1.IsZero() {
		return u, errNeverFires
	}
	if now.Before(t1) {
		return u, nil
	}
	t2 := sched.Next(t1)
	if now.Before(t2) {
		u.recent, u.missed = &t1, 1
		return u, nil
	}
	step := int64(t2.Sub(t1).Round(time.Second).Seconds())
	if t2.IsZero() || step < 1 {
		return u, errNeverFires
	}
	// Estimate the number of start times from the first two, skip ahead
	// to just before the last of them, and walk to it: a schedule with
	// decades of missed times costs a few steps, not millions.
	u.missed = int64(now.Sub(t1).Seconds())/step + 1
	var recent time.Time
	from := t1.Add(time.Duration((u.missed-2)*step) * time.Second)
	for t := sched.Next(from); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		recent = t
	}
	if !recent.IsZero() {
		u.recent = &recent
	}
	return u, nil
}

// nextRequeue is how long until the schedule time after the most recent
// one (or after now when the search failed or times were missed), plus
// nextDelta.
func nextRequeue(cj *batchv1.CronJob, sched *cron.Schedule, now time.Time) time.Duration {
	from := now
	if u, err := mostRecent(cj, sched, now, false); err == nil {
		switch {
		case u.recent != nil:
			from = *u.recent
		case u.missed == 0:
			from = u.earliest
		}
	}
	next := sched.Next(from)
	if next.IsZero() {
		return 0
	}
	return max(next.Add(nextDelta).Sub(now), nextDelta)
}

// parseSchedule parses cj's schedule in its time zone: spec.timeZone, or
// a TZ= prefix in the schedule itself, or the controller's local zone.
func parseSchedule(cj *batchv1.CronJob) (*cron.Schedule, error) {
	sched, err := cron.Parse(cj.Spec.Schedule)
	if err != nil {
		return nil, fmt.Errorf("parse schedule %q: %w", cj.Spec.Schedule, err)
	}
	if tz := cj.Spec.TimeZone; tz != nil && sched.Location == nil {
		loc, err := time.LoadLocation(*tz)
		if err != nil {
			return nil, fmt.Errorf("time zone %q: %w", *tz, err)
		}
		sched.Location = loc
	}
	return sched, nil
}
