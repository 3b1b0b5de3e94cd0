package jobs

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts what envs validates: 5 fields, an optional leading seconds
// field, and descriptors (@daily, @every 10m).
var parser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a job's schedule in its time zone.
//
// Cron expressions and @hourly/@daily/… descriptors follow the wall clock of
// the zone, and each wall-clock time runs at most once: when clocks go back,
// a time in the repeated hour runs at its first occurrence only; when clocks
// go forward, a time inside the skipped hour runs at the moment of the jump
// (once, however many times fell in the gap). @every runs on elapsed time and
// ignores the zone. (robfig/cron on its own runs a repeated time twice and
// drops a skipped one; see docs/jobs.md.)
type Schedule struct {
	expr  string
	loc   *time.Location
	spec  cron.Schedule
	every bool
}

// ParseSchedule parses expr in time zone tz ("" is the host's local zone).
func ParseSchedule(expr, tz string) (*Schedule, error) {
	loc := time.Local
	if tz != "" {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return nil, fmt.Errorf("time zone %q: %w", tz, err)
		}
		loc = l
	}
	spec, err := parser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", expr, err)
	}
	_, every := spec.(cron.ConstantDelaySchedule)
	return &Schedule{expr: expr, loc: loc, spec: spec, every: every}, nil
}

func (s *Schedule) String() string { return s.expr }

// Location is the schedule's time zone.
func (s *Schedule) Location() *time.Location { return s.loc }

// Next is the first scheduled time strictly after after.
func (s *Schedule) Next(after time.Time) time.Time {
	if s.every {
		return s.spec.Next(after)
	}
	// Find the next wall-clock time on a clock without DST (wall fields
	// read as UTC), then map it to an instant in the zone.
	wall := asWall(after.In(s.loc))
	for range 4 { // a repeated hour's second pass can need a further step
		next := s.spec.Next(wall)
		if next.IsZero() {
			return next // a schedule that never fires (Feb 30)
		}
		at := s.instant(next)
		if at.After(after) {
			return at
		}
		wall = next
	}
	return time.Time{}
}

// NextAligned is Next, except that an @every schedule's times are the
// multiples of its interval (since Go's zero time) instead of counting from
// after: hosts of a fleet, started at different moments, then name the
// same scheduled times, which is what a claim is keyed by.
func (s *Schedule) NextAligned(after time.Time) time.Time {
	if !s.every {
		return s.Next(after)
	}
	d := s.spec.(cron.ConstantDelaySchedule).Delay
	if d <= 0 {
		return s.Next(after)
	}
	return after.Truncate(d).Add(d)
}

// Missed counts the scheduled times in (last, now], stopping at limit, and
// returns the latest of them.
func (s *Schedule) Missed(last, now time.Time, limit int) (n int, latest time.Time) {
	for t := s.Next(last); !t.IsZero() && !t.After(now); t = s.Next(t) {
		n, latest = n+1, t
		if n < limit {
			continue
		}
		// Too many to walk: find the latest by looking back from now
		// over a window that doubles until it holds a scheduled time.
		for w := time.Second; w < 800*24*time.Hour; w *= 2 {
			if t2 := s.Next(now.Add(-w)); !t2.IsZero() && !t2.After(now) {
				for ; !t2.IsZero() && !t2.After(now); t2 = s.Next(t2) {
					latest = t2
				}
				break
			}
		}
		break
	}
	return n, latest
}

// asWall is t's wall clock, read as UTC.
func asWall(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, sec := t.Clock()
	return time.Date(y, mo, d, h, mi, sec, t.Nanosecond(), time.UTC)
}

// instant maps a wall-clock time (fields in UTC) to the zone: the earliest
// instant showing that wall time, or, for a time inside a DST gap, the
// instant of the jump.
func (s *Schedule) instant(wall time.Time) time.Time {
	_, before := wall.Add(-36 * time.Hour).In(s.loc).Zone()
	_, after := wall.Add(36 * time.Hour).In(s.loc).Zone()
	var best time.Time
	for _, off := range []int{before, after} {
		at := wall.Add(-time.Duration(off) * time.Second)
		if _, o := at.In(s.loc).Zone(); o == off && (best.IsZero() || at.Before(best)) {
			best = at
		}
	}
	if !best.IsZero() {
		return best.In(s.loc)
	}
	// A gap: the wall time does not exist. Find the transition between
	// the two readings of it, to the second.
	lo := wall.Add(-time.Duration(max(before, after)) * time.Second).Unix()
	hi := wall.Add(-time.Duration(min(before, after)) * time.Second).Unix()
	_, loOff := time.Unix(lo, 0).In(s.loc).Zone()
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if _, o := time.Unix(mid, 0).In(s.loc).Zone(); o == loOff {
			lo = mid
		} else {
			hi = mid
		}
	}
	return time.Unix(hi, 0).In(s.loc)
}
