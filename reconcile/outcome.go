package reconcile

import (
	"time"

	"berth.dev/berth/internal/failure"
)

// Result is how a pass ended, in its journal record and everything made
// from it (status, the API, metrics, the fleet's host record,
// notifications). Consumers switch on these constants; nobody reads a
// reason or a phase name to learn what happened.
type Result string

const (
	ResultRunning Result = "running" // a deploy in flight (or an agent killed in it)
	// ResultSucceeded: the pass made its revision live (a deploy that
	// changed containers, or a commit that changed nothing on this host),
	// or restored the live revision's containers.
	ResultSucceeded Result = "succeeded"
	// ResultUnchanged: the live revision was checked and nothing needed
	// doing. Passes like it are counted into one record.
	ResultUnchanged Result = "unchanged"
	// ResultFailed: a verdict on the revision (refused, invalid, or
	// deployed and rolled back); not retried until a new commit or
	// `berth retry`.
	ResultFailed Result = "failed"
	// ResultOutage: something the revision needs was unreachable; the
	// host kept what it ran and the agent retries with backoff.
	ResultOutage      Result = "outage"
	ResultInterrupted Result = "interrupted" // the agent stopped mid-pass
	// ResultHeld: the fleet halted the revision (it failed on another
	// host, or an operator halted it): this host keeps its live revision,
	// and it is not this host's failure. A new commit or `berth retry`
	// ends it.
	ResultHeld Result = "held"
)

// Label is the one word for how a pass ended that metrics
// (berth_checks_total's result), the fleet's host record and the API
// share: ok, verdict, outage, held, interrupted (running while a deploy
// is in flight).
func (r Result) Label() string {
	switch r {
	case ResultSucceeded, ResultUnchanged:
		return "ok"
	case ResultFailed:
		return "verdict"
	case ResultOutage:
		return "outage"
	case ResultHeld:
		return "held"
	case ResultRunning:
		return "running"
	}
	return "interrupted"
}

// Phase is a step of a pass: its own (list, fetch, load, fleet, plan) or
// a deploy's (prepare … retire).
type Phase string

const (
	PhaseList  Phase = "list"  // the branch head
	PhaseFetch Phase = "fetch" // the revision's working copy
	PhaseLoad  Phase = "load"  // Compose + x-berth + policy
	// PhaseFleet waits for the fleet (its turn in the rollout); the
	// watchdog does not count a long wait there as wedged.
	PhaseFleet   Phase = "fleet"
	PhasePlan    Phase = "plan" // secrets, the container listing, the diff
	PhasePrepare Phase = "prepare"
	PhaseCLI     Phase = "cli"
	PhaseWorkers Phase = "workers"
	PhaseServers Phase = "servers"
	PhaseWatch   Phase = "watch"
	PhaseRetire  Phase = "retire"
	// phaseJournal times the journal writes before each deploy phase
	// (Record.Steps); no pass is ever in it.
	phaseJournal Phase = "journal"
)

// Deploys says whether the phase is part of a deploy that changes the
// host (prepare … retire): STATUS= and the fleet show those, not the
// list, fetch and plan of every idle poll.
func (p Phase) Deploys() bool {
	switch p {
	case PhasePrepare, PhaseCLI, PhaseWorkers, PhaseServers, PhaseWatch, PhaseRetire:
		return true
	}
	return false
}

// Timing is one timed step of a pass or a deploy.
type Timing struct {
	Name     Phase         `json:"name"`
	Duration time.Duration `json:"duration"`
}

// Wait names the coordinated step a pass waits for: the fleet's own words
// (its turn, the canaries, a migration on another host), or WaitEtcd.
type Wait string

// WaitEtcd: etcd does not answer; nothing new is deployed until it does.
const WaitEtcd Wait = "waiting for etcd"

// Pass is how one pass ended: the one value metrics, notifications,
// status, the API and the fleet's host record read (Agent.OnPass,
// daemon.Observer).
type Pass struct {
	// Result is how this pass ended; Record.Result is how the run of
	// passes it was counted into began.
	Result Result
	// Record is the journal record the pass wrote or was counted into
	// (Record.Passes then counts the run of passes that ended the same
	// way).
	Record Record
	// New: the pass started a record of its own (its outcome differs from
	// the pass before, or it changed the host).
	New bool
	// Notify: worth telling people (a deploy that changed something, a
	// verdict, an outage that lasted NotifyOutageAfter passes). At most
	// one notification per pass.
	Notify bool
	// Class ended the pass (Unclassed when it did not fail).
	Class failure.Class
	Err   error
	// Head is the branch head the pass listed ("" when it could not).
	Head string
	// HeadRefused: the head is not live because of a verdict on it
	// (recorded by this pass or an earlier one: failed here, or halted
	// fleet-wide), not because an operator holds or pauses the env.
	HeadRefused bool
	// Waiting is what the pass waited on when it ended (an outage of
	// etcd: WaitEtcd), "" otherwise.
	Waiting Wait
}

// Progress is a pass starting or entering a step.
type Progress struct {
	Commit  string    // the revision being deployed ("" before the head is known)
	Phase   Phase     // the step entered
	Started time.Time // when the pass started
	// Waiting names the coordinated step a fleet's pass waits for (its
	// turn, the canaries, etcd); "" when it stopped waiting.
	Waiting Wait
}
