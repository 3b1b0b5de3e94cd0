package forge

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// HostView is one host of an env as the reporter reads it: from the
// agent's own pass on a single host, from every host's published state
// with a fleet.
type HostView struct {
	Host  string
	Alive bool
	// Live is the revision the host serves.
	Live string
	// Deploying is the revision a deploy in progress brings, in Phase,
	// since Started.
	Deploying string
	Phase     string
	Started   time.Time
	// Waiting names the coordinated step the host waits for.
	Waiting string
	// Result is how the host's last pass ended.
	Result *Outcome
	// Failed is the revision the host refuses (a verdict here).
	Failed string
	// Held says why the host keeps its revision (berth rollback).
	Held string
}

// Outcome is how one pass ended on one host.
type Outcome struct {
	Revision string
	Class    string // "ok", "verdict", "outage"
	Reason   string
	// RolledBack: the deploy changed the host and was undone.
	RolledBack bool
	At         time.Time
}

// HaltView is a revision halted fleet-wide.
type HaltView struct{ Revision, Host, Reason string }

// RolloutView is what a fleet fixed for the target's rollout: its
// canaries and max_parallel as a number of hosts (0: no limit).
type RolloutView struct {
	Canaries    []string
	MaxParallel int
}

// Target is the revision the env's hosts move to: the one of the latest
// deploy started or pass ended on any alive host ("" when none).
func Target(hosts []HostView) string {
	var rev string
	var at time.Time
	for _, h := range hosts {
		if !h.Alive {
			continue
		}
		if h.Deploying != "" && !h.Started.Before(at) {
			rev, at = h.Deploying, h.Started
		}
		if h.Result != nil && h.Result.Revision != "" && !h.Result.At.Before(at) {
			rev, at = h.Result.Revision, h.Result.At
		}
	}
	return rev
}

// Summarize says the status of revision rev over the env's hosts: a
// verdict on any host fails it, a fleet-wide halt holds it, all alive hosts
// live on it is success, anything else is pending with the progress
// ("live on 7/10 hosts, wave 5, canary ok"; one host: "deploying on web-1:
// servers"). Hosts that are gone do not count.
func Summarize(rev string, hosts []HostView, halts []HaltView, ro *RolloutView) (State, string) {
	alive := slices.DeleteFunc(slices.Clone(hosts), func(h HostView) bool { return !h.Alive })
	slices.SortFunc(alive, func(a, b HostView) int { return strings.Compare(a.Host, b.Host) })
	for _, h := range halts {
		if h.Revision == rev {
			return Error, fmt.Sprintf("held: halted fleet-wide after %s: %s", h.Host, h.Reason)
		}
	}
	live := 0
	for _, h := range alive {
		if h.Live == rev {
			live++
		}
	}
	for _, h := range alive {
		if h.Live != rev && h.Result != nil && h.Result.Revision == rev && h.Result.Class == "held" {
			return Error, strings.TrimSuffix("held on "+h.Host+": "+h.Result.Reason, ": ")
		}
		if h.Failed == rev || (h.Result != nil && h.Result.Revision == rev && h.Result.Class == "verdict") {
			reason := ""
			rolled := false
			if h.Result != nil && h.Result.Revision == rev {
				reason, rolled = h.Result.Reason, h.Result.RolledBack
			}
			verb := "refused on "
			if rolled {
				verb = "rolled back on "
			}
			return Failure, strings.TrimSuffix(verb+h.Host+": "+reason, ": ")
		}
	}
	if len(alive) > 0 && live == len(alive) {
		if len(alive) == 1 {
			return Success, "live on " + alive[0].Host
		}
		return Success, fmt.Sprintf("live on %d/%d hosts", live, len(alive))
	}
	if len(alive) == 1 {
		return Pending, progressOne(rev, alive[0])
	}
	s := fmt.Sprintf("live on %d/%d hosts", live, len(alive))
	if ro != nil {
		s += waveOf(rev, alive, live, ro)
	}
	for _, h := range alive {
		if h.Live != rev && h.Result != nil && h.Result.Revision == rev && h.Result.Class == "outage" {
			s += "; " + h.Host + " waiting: " + h.Result.Reason
			break
		}
	}
	return Pending, s
}

// progressOne says where one host is with rev.
func progressOne(rev string, h HostView) string {
	switch {
	case h.Deploying == rev && h.Waiting != "":
		return "waiting on " + h.Host + ": " + h.Waiting
	case h.Deploying == rev:
		return "deploying on " + h.Host + ": " + h.Phase
	case h.Result != nil && h.Result.Revision == rev && h.Result.Class == "outage":
		return "waiting on " + h.Host + ": " + h.Result.Reason
	case h.Held != "":
		return "held on " + h.Host + ": " + h.Held
	}
	return "queued on " + h.Host
}

// waveOf says which wave of the rollout runs: the canaries first, then
// max_parallel hosts at a time.
func waveOf(rev string, alive []HostView, live int, ro *RolloutView) string {
	canariesLive := 0
	for _, h := range alive {
		if slices.Contains(ro.Canaries, h.Host) && h.Live == rev {
			canariesLive++
		}
	}
	if len(ro.Canaries) > 0 && canariesLive < len(ro.Canaries) {
		return ", wave 1 (canary)"
	}
	wave := 1
	if len(ro.Canaries) > 0 {
		wave = 2
	}
	if ro.MaxParallel > 0 {
		wave += max(live-canariesLive, 0) / ro.MaxParallel
	}
	s := fmt.Sprintf(", wave %d", wave)
	if len(ro.Canaries) > 0 {
		s += ", canary ok"
	}
	return s
}
