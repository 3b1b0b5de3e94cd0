package jobs

import (
	"testing"
	"time"
)

func mustSchedule(t *testing.T, expr, tz string) *Schedule {
	t.Helper()
	s, err := ParseSchedule(expr, tz)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// walk returns the n scheduled times after from, in UTC.
func walk(s *Schedule, from time.Time, n int) []time.Time {
	var out []time.Time
	for t := from; len(out) < n; {
		t = s.Next(t)
		out = append(out, t.UTC())
	}
	return out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func sameTimes(t *testing.T, what string, got []time.Time, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for i := range want {
		if !got[i].Equal(utc(want[i])) {
			t.Errorf("%s: time %d = %s, want %s (all: %v)", what, i, got[i].Format(time.RFC3339), want[i], got)
		}
	}
}

func TestSchedule_NextForEachKindOfExpression(t *testing.T) {
	from := utc("2026-11-24T10:07:13Z")
	sameTimes(t, "5 fields", walk(mustSchedule(t, "*/15 * * * *", "UTC"), from, 3),
		"2026-11-24T10:15:00Z", "2026-11-24T10:30:00Z", "2026-11-24T10:45:00Z")
	sameTimes(t, "seconds field", walk(mustSchedule(t, "*/20 * * * * *", "UTC"), from, 3),
		"2026-11-24T10:07:20Z", "2026-11-24T10:07:40Z", "2026-11-24T10:08:00Z")
	sameTimes(t, "@every", walk(mustSchedule(t, "@every 2s", "Asia/Tokyo"), from, 2),
		"2026-11-24T10:07:15Z", "2026-11-24T10:07:17Z")
	sameTimes(t, "@daily in a zone", walk(mustSchedule(t, "@daily", "America/New_York"), from, 2),
		"2026-11-25T05:00:00Z", "2026-11-26T05:00:00Z")
	sameTimes(t, "3am London in winter", walk(mustSchedule(t, "0 3 * * *", "Europe/London"), from, 1),
		"2026-11-25T03:00:00Z")
	if _, err := ParseSchedule("61 * * * *", "UTC"); err == nil {
		t.Error("minute 61 accepted")
	}
	if _, err := ParseSchedule("@daily", "Mars/Olympus"); err == nil {
		t.Error("unknown zone accepted")
	}
}

// Clocks in Europe/London go forward at 01:00 GMT on 2026-03-29 (01:00 to
// 01:59 do not exist) and back at 01:00 GMT on 2026-10-25 (01:00 to 01:59
// happen twice).
func TestSchedule_DaylightSavingTime(t *testing.T) {
	daily := mustSchedule(t, "30 1 * * *", "Europe/London")
	sameTimes(t, "a skipped time runs at the jump, once", walk(daily, utc("2026-03-28T12:00:00Z"), 3),
		"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z", "2026-03-31T00:30:00Z")
	sameTimes(t, "a repeated time runs at its first occurrence only", walk(daily, utc("2026-10-24T12:00:00Z"), 3),
		"2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z")

	// Several times inside the gap still make one run.
	every10 := mustSchedule(t, "*/20 1 * * *", "Europe/London")
	sameTimes(t, "times in the gap collapse into one run", walk(every10, utc("2026-03-29T00:30:00Z"), 2),
		"2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z")

	hourly := mustSchedule(t, "0 * * * *", "Europe/London")
	sameTimes(t, "hourly over the spring jump", walk(hourly, utc("2026-03-28T23:30:00Z"), 4),
		"2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z", "2026-03-29T03:00:00Z")
	sameTimes(t, "hourly over the autumn repeat: wall-clock 01:00 once", walk(hourly, utc("2026-10-24T22:30:00Z"), 4),
		"2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z", "2026-10-25T03:00:00Z")

	// Agent started inside the second pass of the repeated hour: 01:30 had
	// its (first) occurrence already, so the next run is tomorrow's.
	sameTimes(t, "started in the repeated hour", walk(daily, utc("2026-10-25T01:10:00Z"), 1), "2026-10-26T01:30:00Z")

	// @every is elapsed time: DST does not show.
	sameTimes(t, "@every over the jump", walk(mustSchedule(t, "@every 30m", "Europe/London"), utc("2026-03-29T00:45:00Z"), 2),
		"2026-03-29T01:15:00Z", "2026-03-29T01:45:00Z")
}

func TestSchedule_MissedIsCountedAndBounded(t *testing.T) {
	daily := mustSchedule(t, "0 3 * * *", "UTC")
	n, latest := daily.Missed(utc("2026-11-20T03:00:00Z"), utc("2026-11-24T10:00:00Z"), 1000)
	if n != 4 || !latest.Equal(utc("2026-11-24T03:00:00Z")) {
		t.Errorf("daily: %d missed, latest %s; want 4, 2026-11-24T03:00", n, latest)
	}
	if n, _ := daily.Missed(utc("2026-11-24T03:00:00Z"), utc("2026-11-24T10:00:00Z"), 1000); n != 0 {
		t.Errorf("nothing missed, got %d", n)
	}
	// A year of @every 1s is not walked: the count stops at the limit and
	// the latest time is still found.
	sec := mustSchedule(t, "@every 1s", "UTC")
	start := time.Now()
	n, latest = sec.Missed(utc("2025-11-24T10:00:00Z"), utc("2026-11-24T10:00:00.5Z"), 1000)
	if n != 1000 || !latest.Equal(utc("2026-11-24T10:00:00Z")) {
		t.Errorf("@every 1s over a year: %d, latest %s", n, latest)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("bounded count took %s", d)
	}
}
