package ui

import (
	"fmt"
	"strings"
	"time"

	"berth.dev/berth/reconcile"
)

// From the journal's records to the timeline, the history and a deploy's
// page.

// resultClass is the CSS class (and colour) of a pass's result.
func resultClass(result reconcile.Result) string {
	switch result {
	case reconcile.ResultSucceeded, reconcile.ResultUnchanged:
		return "ok"
	case reconcile.ResultFailed:
		return "fail"
	case reconcile.ResultOutage:
		return "outage"
	case reconcile.ResultRunning:
		return "run"
	case reconcile.ResultInterrupted:
		return "interrupted"
	case reconcile.ResultHeld:
		return "held"
	}
	return "other"
}

// isDeploy says whether a record belongs on the timeline: a pass that
// deployed, or tried to (a verdict before any phase included); not the
// quiet passes, nor an outage that changed nothing.
func isDeploy(r *reconcile.Record) bool {
	switch r.Result {
	case reconcile.ResultUnchanged, reconcile.ResultHeld:
		return false
	case reconcile.ResultFailed, reconcile.ResultRunning:
		return true
	}
	return len(r.Phases) > 0 || len(r.Done) > 0
}

// recordTotal is how long the pass took (so far, when it runs).
func recordTotal(r *reconcile.Record, now time.Time) time.Duration {
	end := r.Finished
	if end.IsZero() || r.Result == reconcile.ResultRunning {
		end = now
	}
	return max(end.Sub(r.Started), 0)
}

// recordRow draws one record as a bar: the pass's own steps (list, fetch,
// load, plan), a fleet's turn, the deploy's phases, then what follows the
// last phase: the rollback with its undo steps, a deploy still in flight,
// or the rest of the pass (its journal writes).
func recordRow(env string, r *reconcile.Record, now time.Time) timelineRow {
	row := timelineRow{
		Href: href("deploy", env, r.ID), When: r.Started, Label: short(r.Commit),
		Subject: clean(r.Subject), Author: clean(r.Author), Result: clean(r.Result), Class: resultClass(r.Result),
		Reason: clean(r.Reason),
	}
	total := recordTotal(r, now)
	row.Duration = fmtDur(total)
	var sum time.Duration
	add := func(p part) {
		sum += p.Dur
		row.Parts = append(row.Parts, p)
	}
	for _, s := range r.Steps {
		if s.Name == "journal" {
			continue // spread over the pass: part of the rest
		}
		add(part{Name: clean(s.Name), Dur: s.Duration, Kind: "step", Title: clean(s.Name) + " " + fmtDur(s.Duration)})
	}
	if f := r.Fleet; f != nil && !f.Admitted.IsZero() && f.Admitted.After(f.Asked) {
		d := f.Admitted.Sub(f.Asked)
		add(part{Name: "fleet", Dur: d, Kind: "wait", Title: "waited for its turn in the fleet's rollout " + fmtDur(d)})
	}
	for i, p := range r.Phases {
		kind := "phase"
		title := clean(p.Name) + " " + fmtDur(p.Duration)
		last := i == len(r.Phases)-1
		if last && (r.Result == reconcile.ResultFailed || r.Result == reconcile.ResultOutage || r.Result == reconcile.ResultInterrupted) && r.Phase == p.Name {
			kind = "failed"
			title += ": " + clean(r.Result) + ": " + clean(r.Reason)
		}
		add(part{Name: clean(p.Name), Dur: p.Duration, Kind: kind, Alt: i%2 == 1, Title: title})
	}
	rest := total - sum
	switch {
	case len(r.Undone) > 0:
		undo := make([]string, len(r.Undone))
		for i, u := range r.Undone {
			undo[i] = clean(u)
		}
		add(part{Name: "rollback", Dur: max(rest, 0), Kind: "rollback",
			Title: "rollback " + fmtDur(max(rest, 0)) + ": " + strings.Join(undo, "; ")})
	case r.Result == reconcile.ResultRunning:
		add(part{Name: "in progress", Dur: max(rest, 0), Kind: "progress", Title: "in progress: " + clean(r.Phase) + " for " + fmtDur(max(rest, 0))})
	case len(r.Phases) == 0 && r.Result == reconcile.ResultFailed:
		// A verdict before any phase (an invalid config, a refused
		// signature): the step it ended in, in red.
		add(part{Name: clean(r.Phase), Dur: max(rest, 0), Kind: "failed", Title: clean(r.Phase) + ": " + clean(r.Reason)})
	case rest > total/20 && rest > 50*time.Millisecond:
		add(part{Name: "other", Dur: rest, Kind: "other", Title: "the rest of the pass (its journal writes) " + fmtDur(rest)})
	}
	for _, d := range r.Done {
		if strings.HasPrefix(d, "switch ") {
			row.Marks = append(row.Marks, barMark{Title: clean(d)})
		}
	}
	row.Title = fmt.Sprintf("%s %s %s in %s", row.Label, row.Subject, row.Result, row.Duration)
	if row.Reason != "" {
		row.Title += ": " + row.Reason
	}
	return row
}

// historyRowOf is a record's row in the history table.
func historyRowOf(env string, r *reconcile.Record, now time.Time) historyRow {
	return historyRow{
		Env: clean(env), ID: clean(r.ID), Href: href("deploy", env, r.ID),
		Commit: clean(r.Commit), Short: short(r.Commit), Author: clean(r.Author), Subject: clean(r.Subject),
		Started: r.Started, Duration: fmtDur(recordTotal(r, now)),
		Result: clean(r.Result), Class: resultClass(r.Result), Phase: clean(r.Phase), Reason: clean(r.Reason),
		Passes: r.Count(), Done: len(r.Done), Undone: len(r.Undone),
	}
}

// deployViewOf is a record's own page.
func deployViewOf(env string, r *reconcile.Record, now time.Time) deployView {
	v := deployView{
		Env: clean(env), ID: clean(r.ID), Commit: clean(r.Commit), Short: short(r.Commit),
		Author: clean(r.Author), Subject: clean(r.Subject), Signer: clean(r.Signer),
		Started: r.Started, Finished: r.Finished, Duration: fmtDur(recordTotal(r, now)),
		Result: clean(r.Result), Class: resultClass(r.Result), ResultClass: clean(r.Class),
		Phase: clean(r.Phase), Reason: clean(r.Reason), Passes: r.Count(), Live: short(r.Live),
		Actions: cleanAll(r.Actions), Done: cleanAll(r.Done), Undone: cleanAll(r.Undone), Images: cleanAll(r.Images),
		HistoryHref: href("history") + "?env=" + queryEscape(env),
	}
	v.Timeline = layoutTimeline([]timelineRow{recordRow(env, r, now)})
	for i, p := range r.Phases {
		failed := i == len(r.Phases)-1 && r.Result != reconcile.ResultSucceeded && r.Phase == p.Name
		v.Phases = append(v.Phases, phaseRow{Name: clean(p.Name), Duration: fmtDur(p.Duration), Failed: failed})
	}
	for _, s := range r.Steps {
		v.Steps = append(v.Steps, phaseRow{Name: clean(s.Name), Duration: fmtDur(s.Duration)})
	}
	for _, o := range r.OneShots {
		res := fmt.Sprintf("exit %d", o.ExitCode)
		switch {
		case o.Skipped != "":
			res = "skipped: " + o.Skipped
		case o.TimedOut:
			res = "timed out"
		case o.Interrupted != "":
			res = "interrupted: " + o.Interrupted
		}
		v.OneShots = append(v.OneShots, oneShotRow{Service: clean(o.Service), Result: clean(res), Duration: fmtDur(o.Duration),
			Output: cleanBlock(o.Output, maxOutput)})
	}
	if f := r.Fleet; f != nil {
		v.Fleet = &turnView{Asked: f.Asked, Admitted: f.Admitted, Released: f.Released, Slot: f.Slot, Canary: f.Canary,
			Joining: f.Joining, Outcome: clean(f.Outcome)}
	}
	return v
}

func cleanAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = clean(s)
	}
	return out
}
