package ui

import (
	"fmt"
	"math"
	"time"
)

// The deploy timeline: each deploy is one horizontal bar, split into its
// steps and phases, coloured by how it ended, drawn by the server as
// inline SVG (one small <svg> per table row, so a text browser reads the
// table and skips the drawing). All bars of a timeline share one scale:
// the longest deploy shown fills barWidth. Hovering a part shows its
// <title> (name, duration, and the reason on the part that failed);
// clicking a bar opens the deploy's record.

const (
	barWidth  = 420.0
	barHeight = 18.0
	// minPart keeps a part that took a moment wide enough to hover.
	minPart = 2.0
	// maxPart bounds a part's duration: times read from etcd are hostile
	// (a rollout "made" centuries ago overflowed the scale's arithmetic).
	maxPart = 1000 * 24 * time.Hour
)

type timeline struct {
	// Caption says what a bar is.
	Caption string
	Width   float64
	Height  float64
	Scale   string // the duration the whole width stands for
	Ticks   []tick
	Rows    []timelineRow
}

type tick struct {
	X     float64
	Label string
}

type timelineRow struct {
	Href     string
	When     time.Time
	Label    string // a commit, a revision
	Subject  string
	Author   string
	Result   string
	Class    string // ok, fail, outage, run, interrupted, held
	Reason   string
	Duration string
	Title    string // the bar's own title: what, how long, how it ended
	Parts    []part
	Marks    []barMark
	Width    float64 // the bar's length on the shared scale
}

// part is one segment of a bar. Kind is its CSS class: step (the pass's
// own work: list, fetch, load, plan), wait (a fleet's turn), phase (a
// deploy phase), failed (the phase a verdict or outage ended), rollback
// (the undo steps after it), progress (a deploy in flight), other.
type part struct {
	Name  string
	Dur   time.Duration
	Kind  string
	Alt   bool // every other phase is shaded, so neighbours show apart
	Title string
	X, W  float64
}

// barMark is a tick on a bar: a load-balancer switch inside the servers
// phase.
type barMark struct {
	X     float64
	Title string
}

// layoutTimeline places every part of every row on one shared scale.
func layoutTimeline(rows []timelineRow) timeline {
	var longest time.Duration
	for i := range rows {
		for j := range rows[i].Parts {
			p := &rows[i].Parts[j]
			p.Dur = min(max(p.Dur, 0), maxPart)
		}
		longest = max(longest, rowTotal(rows[i]))
	}
	t := timeline{Width: barWidth, Height: barHeight, Rows: rows,
		Caption: "Each bar is one deploy, split into its steps and phases on one scale"}
	if longest <= 0 {
		longest = time.Second
	}
	step := niceStep(longest)
	longest = time.Duration(math.Ceil(float64(longest)/float64(step))) * step
	t.Scale = fmtDur(longest)
	for d := time.Duration(0); d <= longest; d += step {
		t.Ticks = append(t.Ticks, tick{X: round1(barWidth * float64(d) / float64(longest)), Label: fmtDur(d)})
	}
	px := barWidth / float64(longest)
	for i := range t.Rows {
		r := &t.Rows[i]
		x := 0.0
		for j := range r.Parts {
			p := &r.Parts[j]
			w := float64(p.Dur) * px
			if w < minPart {
				w = minPart
			}
			p.X, p.W = round1(x), round1(w)
			x += w
		}
		r.Width = round1(x)
		r.Marks = placeMarks(r)
	}
	return t
}

func rowTotal(r timelineRow) time.Duration {
	var d time.Duration
	for _, p := range r.Parts {
		d += p.Dur
	}
	return d
}

// placeMarks spreads a row's marks over the last third of its servers
// phase: the switches happen at its end, one server after the other.
func placeMarks(r *timelineRow) []barMark {
	if len(r.Marks) == 0 {
		return nil
	}
	var srv *part
	for j := range r.Parts {
		if r.Parts[j].Name == "servers" {
			srv = &r.Parts[j]
		}
	}
	if srv == nil {
		return nil
	}
	out := make([]barMark, len(r.Marks))
	for i, m := range r.Marks {
		frac := 2.0/3 + (1.0/3)*float64(i+1)/float64(len(r.Marks)+1)
		out[i] = barMark{X: round1(srv.X + srv.W*frac), Title: m.Title}
	}
	return out
}

// niceStep is a tick interval of 1, 2 or 5 × 10^k giving 3 to 6 ticks.
func niceStep(d time.Duration) time.Duration {
	raw := float64(d) / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return max(time.Duration(m*mag), time.Millisecond)
		}
	}
	return time.Duration(10 * mag)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// fmtDur is a duration as a person reads it: 340ms, 4.2s, 3m12s, 2h5m.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
