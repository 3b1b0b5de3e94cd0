package status

import (
	"fmt"
	"strings"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/reconcile"
)

// Line is env's part of the unit's STATUS= (systemctl status berth): the
// live revision, a deploy in flight, and a verdict or outage that holds
// the head back.
func Line(cfg *agentconfig.Config, env string, l *Live) string {
	a := l.Snapshot()
	s := "env " + env + ": "
	st, err := reconcile.LoadState(cfg.EnvDir(env))
	switch {
	case err != nil:
		s += "state unreadable: " + err.Error()
	case st.Live != nil:
		s += fmt.Sprintf("live %.12s since %s", st.Live.Commit, st.Live.At.Format(time.RFC3339))
	default:
		s += "no live revision yet"
	}
	if p := a.Pass; p != nil && p.Phase.Deploys() {
		s += fmt.Sprintf("; deploying %.12s: %s", p.Commit, p.Phase)
	}
	if p := a.Pass; p != nil && p.Waiting != "" {
		s += fmt.Sprintf("; %.12s %s", p.Commit, p.Waiting)
	}
	switch last := a.Last; {
	case last == nil:
		if a.Pass == nil {
			s += "; first check running"
		}
	case last.Result == reconcile.ResultOutage:
		s += fmt.Sprintf("; outage since %s (%d passes), retrying: %s", last.Since.Format(time.RFC3339), last.Passes, OneLine(last.Reason))
	case last.Result == reconcile.ResultFailed:
		s += fmt.Sprintf("; %.12s failed (verdict): %s", last.Commit, OneLine(last.Reason))
	case last.Result == reconcile.ResultHeld:
		s += fmt.Sprintf("; %.12s held: %s", last.Commit, OneLine(last.Reason))
	default:
		if err == nil && st.Failed != nil {
			s += fmt.Sprintf("; %.12s failed", st.Failed.Commit)
		}
	}
	if err == nil && st.Pause != nil {
		s += fmt.Sprintf("; paused by %s since %s", st.Pause.By, st.Pause.At.Format(time.RFC3339))
	}
	return s
}

// OneLine is the first line of s, at most 200 bytes: STATUS= and a table
// cell are one line.
func OneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
