package ui

import (
	"fmt"
	"strings"
	"time"

	"berth.dev/berth/fleet"
)

// A fleet's rollouts: the newest one's waves, slots and canaries, and the
// newest few drawn as bars (canaries, then the waves after the gate).

// rolloutOf is the newest rollout in detail.
func rolloutOf(o *fleet.Overview, r *fleet.RolloutState) *rolloutView {
	v := &rolloutView{Short: short(r.Revision), By: clean(r.By), Created: r.Created, Known: len(r.Known), Queued: o.Queued,
		MaxParallel: "no limit"}
	if r.MaxParallel > 0 {
		v.MaxParallel = fmt.Sprint(r.MaxParallel)
		if r.MaxParallelSpec != "" && r.MaxParallelSpec != v.MaxParallel {
			v.MaxParallel += " (" + clean(r.MaxParallelSpec) + ")"
		}
	}
	done := map[string]fleet.HostResult{}
	for _, d := range r.Done {
		done[d.Host] = d
		if d.OK {
			v.OK++
		} else {
			v.Failed++
		}
	}
	deploying := map[string]string{}
	for i := range o.Hosts {
		h := &o.Hosts[i]
		if !h.Alive {
			continue
		}
		if d := h.Deploy; d != nil && d.Revision == r.Revision {
			if _, ok := done[h.Host]; !ok {
				deploying[h.Host] = d.Phase
				v.Deploying++
			}
		}
		if h.Waiting != "" && (h.Deploy == nil || h.Deploy.Revision == r.Revision) {
			v.Waiting++
		}
	}
	for _, c := range r.Canaries {
		st := "pending"
		if d, ok := done[c]; ok {
			st = "live"
			if !d.OK {
				st = "failed: " + d.Reason
			}
		} else if ph, ok := deploying[c]; ok {
			st = "deploying: " + ph
		}
		v.Canaries = append(v.Canaries, canaryRow{Host: clean(c), Href: href("fleet", "host", o.Env, c), State: clean(st)})
	}
	switch {
	case len(r.Canaries) == 0:
		v.Gate = "no canaries"
	case r.Promoted:
		v.Gate = "open: the canaries are live"
	case r.Pausing:
		v.Gate = fmt.Sprintf("pausing %s after the canaries", r.Pause)
	default:
		v.Gate = "closed until every canary is live"
	}
	for _, h := range o.Halts {
		if h.Revision == r.Revision {
			v.Halt = clean(h.Reason)
		}
	}
	for _, s := range o.Slots {
		if s.Revision == r.Revision || s.Revision == "" {
			v.Slots = append(v.Slots, slotRow{Index: s.Index, Host: clean(s.Host), Href: href("fleet", "host", o.Env, s.Host), Since: s.Since})
		}
	}
	rest := max(v.Known-v.OK-v.Failed-v.Deploying, 0)
	v.Bar = stackBar([]part{
		{Name: "live", Kind: "phase", Dur: time.Duration(v.OK), Title: fmt.Sprintf("%d live on it", v.OK)},
		{Name: "failed", Kind: "failed", Dur: time.Duration(v.Failed), Title: fmt.Sprintf("%d failed", v.Failed)},
		{Name: "deploying", Kind: "progress", Dur: time.Duration(v.Deploying), Title: fmt.Sprintf("%d deploying", v.Deploying)},
		{Name: "to go", Kind: "other", Dur: time.Duration(rest), Title: fmt.Sprintf("%d not started", rest)},
	}, fmt.Sprintf("%d hosts", max(v.Known, v.OK+v.Failed+v.Deploying)))
	return v
}

// stackBar draws counts (in Dur) as one bar across the whole width.
func stackBar(parts []part, scale string) timeline {
	var total time.Duration
	var kept []part
	for _, p := range parts {
		if p.Dur > 0 {
			total += p.Dur
			kept = append(kept, p)
		}
	}
	t := timeline{Width: barWidth, Height: barHeight, Scale: scale}
	if total == 0 {
		return t
	}
	row := timelineRow{Width: barWidth}
	x := 0.0
	for _, p := range kept {
		p.X, p.W = round1(x), round1(barWidth*float64(p.Dur)/float64(total))
		x += barWidth * float64(p.Dur) / float64(total)
		row.Parts = append(row.Parts, p)
	}
	t.Rows = []timelineRow{row}
	return t
}

// revisionBar draws the live hosts by revision.
func revisionBar(revs []revCount) timeline {
	var parts []part
	total := 0
	for i, r := range revs {
		total += r.Hosts
		kind := "phase"
		if r.Short == "none" {
			kind = "other"
		}
		parts = append(parts, part{Name: r.Short, Kind: kind, Alt: i%2 == 1, Dur: time.Duration(r.Hosts),
			Title: fmt.Sprintf("%s %s: %d hosts", r.Short, r.Subject, r.Hosts)})
	}
	return stackBar(parts, fmt.Sprintf("%d live hosts", total))
}

// rolloutTimeline draws the newest rollouts: from the record's making to
// the last canary's result, then to the last host's (or now, while it
// goes on); red when halted, green when complete.
func rolloutTimeline(o *fleet.Overview, now time.Time) timeline {
	subjects := map[string]*fleet.Commit{}
	for i := range o.Hosts {
		if l := o.Hosts[i].Live; l != nil {
			subjects[l.Revision] = l
		}
	}
	halts := map[string]fleet.Halt{}
	for _, h := range o.Halts {
		halts[h.Revision] = h
	}
	var rows []timelineRow
	for i := range o.Rollouts {
		r := &o.Rollouts[i]
		canary := map[string]bool{}
		for _, c := range r.Canaries {
			canary[c] = true
		}
		var canaryEnd, end time.Time
		canariesDone, failed, canaryFailed := 0, 0, false
		for _, d := range r.Done {
			if canary[d.Host] {
				canariesDone++
				canaryEnd = later(canaryEnd, d.At)
				canaryFailed = canaryFailed || !d.OK
			}
			if !d.OK {
				failed++
			}
			end = later(end, d.At)
		}
		halt, halted := halts[r.Revision]
		complete := (o.Good != nil && o.Good.Revision == r.Revision) || (len(r.Known) > 0 && len(r.Done) >= len(r.Known))
		row := timelineRow{When: r.Created, Label: short(r.Revision), Class: "run", Result: "rolling out"}
		if c := subjects[r.Revision]; c != nil {
			row.Subject, row.Author = clean(c.Subject), clean(c.Author)
		}
		switch {
		case halted:
			row.Class, row.Result, row.Reason = "fail", "halted", clean(halt.Reason)
			end = later(end, halt.At)
		case complete:
			row.Class, row.Result = "ok", "complete"
		default:
			end = now
		}
		if end.Before(r.Created) {
			end = r.Created
		}
		canaries := fmt.Sprintf("canaries %s", strings.Join(cleanAll(r.Canaries), ", "))
		switch {
		case canaryFailed:
			// The canaries stopped it: the others never started.
			row.Parts = append(row.Parts, part{Name: "canaries", Kind: "failed", Dur: canaryEnd.Sub(r.Created),
				Title: fmt.Sprintf("%s failed after %s: %s", canaries, fmtDur(canaryEnd.Sub(r.Created)), row.Reason)})
		case len(r.Canaries) > 0 && canariesDone == len(r.Canaries) && !canaryEnd.Before(r.Created):
			row.Parts = append(row.Parts, part{Name: "canaries", Kind: "phase", Dur: canaryEnd.Sub(r.Created),
				Title: fmt.Sprintf("%s: %s", canaries, fmtDur(canaryEnd.Sub(r.Created)))})
			kind, title := "phase", fmt.Sprintf("the other hosts, max_parallel %d: %s", r.MaxParallel, fmtDur(end.Sub(canaryEnd)))
			switch {
			case halted:
				kind, title = "failed", title+": halted: "+row.Reason
			case !complete:
				kind = "progress"
			}
			row.Parts = append(row.Parts, part{Name: "waves", Kind: kind, Alt: true, Dur: end.Sub(canaryEnd), Title: title})
		default:
			kind, title := "progress", "rollout "+fmtDur(end.Sub(r.Created))
			switch {
			case halted:
				kind, title = "failed", title+": halted: "+row.Reason
			case complete:
				kind = "phase"
			}
			row.Parts = append(row.Parts, part{Name: "rollout", Kind: kind, Dur: end.Sub(r.Created), Title: title})
		}
		row.Duration = fmtDur(end.Sub(r.Created))
		row.Title = fmt.Sprintf("%s %s: %d of %d hosts done, %d failed, in %s", row.Label, row.Result, len(r.Done), len(r.Known), failed, row.Duration)
		rows = append(rows, row)
	}
	t := layoutTimeline(rows)
	t.Caption = "Each bar is one revision's rollout: the canaries, then the other hosts in waves, on one scale"
	return t
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
