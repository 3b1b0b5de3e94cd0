package ui

import (
	"fmt"
	"slices"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/jobs"
)

// stripRuns is how many runs a job's strip shows.
const stripRuns = 20

// runClass is a run's colour and the glyph a text browser shows in the
// strip: green, red, grey for skipped, a missed time, blue in flight.
func runClass(status, trigger string) (class, glyph string) {
	switch status {
	// The fleet's statuses are the job store's (succeeded, failed,
	// running), plus lost and the local ones it passes on (timed_out).
	case string(jobs.StatusSucceeded):
		class, glyph = "ok", "✓"
	case string(jobs.StatusFailed), string(jobs.StatusTimeout), "timed_out":
		class, glyph = "fail", "✗"
	case string(jobs.StatusSkipped):
		class, glyph = "skip", "–"
	case string(jobs.StatusRunning):
		class, glyph = "run", "…"
	case string(jobs.StatusInterrupted), fleet.JobLost:
		class, glyph = "interrupted", "!"
	default:
		class, glyph = "other", "?"
	}
	if trigger == jobs.TriggerMissed || status == "missed" {
		class, glyph = "missed", "○"
	}
	return class, glyph
}

// localRun is one run of this host's job store.
func localRun(env, host string, r *jobs.Run) runView {
	class, glyph := runClass(string(r.Status), r.Trigger)
	v := runView{
		ID: clean(r.ID), Href: href("jobs", env, r.Job, r.ID), Status: clean(string(r.Status)), Class: class, Glyph: glyph,
		Trigger: clean(r.Trigger), Host: clean(host), Scheduled: r.Scheduled, Started: r.Started, Finished: r.Finished,
		Reason: clean(r.Reason), Revision: short(r.Revision), StdoutDropped: r.StdoutDropped, StderrDropped: r.StderrDropped,
	}
	if r.Host != "" {
		v.Host = clean(r.Host)
	}
	if r.ExitCode != nil {
		v.Exit = fmt.Sprint(*r.ExitCode)
	}
	if !r.Finished.IsZero() && !r.Started.IsZero() {
		v.Duration = fmtDur(r.Finished.Sub(r.Started))
	}
	return v
}

// fleetRun is one run of a job's fleet record: the host that ran it.
func fleetRun(env string, r *fleet.JobRecord) runView {
	class, glyph := runClass(r.Status, "")
	v := runView{
		ID: clean(timeID(r.Scheduled)), Href: href("fleet", "jobs", env, r.Job) + "#t" + timeID(r.Scheduled),
		Status: clean(r.Status), Class: class, Glyph: glyph, Trigger: "schedule", Host: clean(r.Host),
		Scheduled: r.Scheduled, Started: r.Started, Finished: r.Ended, Reason: clean(r.Reason),
	}
	if r.Status != fleet.JobRunning && r.Status != fleet.JobLost {
		v.Exit = fmt.Sprint(r.ExitCode)
	}
	if !r.Ended.IsZero() && !r.Started.IsZero() {
		v.Duration = fmtDur(r.Ended.Sub(r.Started))
	}
	if r.LeaseLost {
		v.Reason = clean("lease lost; " + r.Reason)
	}
	return v
}

func timeID(t time.Time) string { return t.UTC().Format("20060102T150405Z") }

// jobOf is a job's row: its listing entry and the strip of its newest
// runs (runs are newest first).
func jobOf(env string, e *jobs.Entry, runs []runView) jobView {
	tz := e.Timezone
	if tz == "" {
		tz = "local"
	}
	j := jobView{
		Env: clean(env), Name: clean(e.Name), Schedule: clean(e.Schedule), Timezone: clean(tz), Next: e.Next,
		Running: len(e.Running), Href: href("jobs", env, e.Name),
	}
	if len(runs) > 0 {
		last := runs[0]
		j.Last = &last
	}
	strip := runs[:min(len(runs), stripRuns)]
	j.Runs = slices.Clone(strip)
	slices.Reverse(j.Runs)
	return j
}
