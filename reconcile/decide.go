package reconcile

import (
	"time"

	"berth.dev/berth/internal/failure"
)

// ending is what decide needs to know of how a pass ended.
type ending struct {
	err      error         // nil, or marked with class
	class    failure.Class // Unclassed only when err is nil
	canceled bool          // the agent is stopping
	held     bool          // the fleet halted the revision (fleet.go)
	target   string        // the revision the pass was about ("" before the head was known)
	live     string        // the live revision when the pass began
	changed  bool          // the deploy changed containers
	state    State         // as the pass leaves it so far (a request, the gate)
	id       string
	now      time.Time
}

// decision is how a pass ended: its result and class, the state it
// leaves, and what the poller backs off on.
type decision struct {
	result Result
	class  failure.Class // Unclassed unless the pass failed
	state  State
	ret    error
}

// decide is the outcome of a pass: pure, no I/O (finish persists and
// reports it).
//
//   - no error: the target went live (succeeded: a new commit, or the
//     live one's containers restored), or nothing needed doing
//     (unchanged); a new commit going live forgets an older failure;
//   - the agent stopping: interrupted, retried on the next start;
//   - the fleet halted the revision: held, not this host's failure, not
//     returned;
//   - a verdict on a new revision: failed, recorded in the state, not
//     returned (the poller keeps its pace); a verdict on the live
//     revision or on none is returned (backed off on) and the live
//     commit is never marked failed;
//   - anything else: an outage, returned.
func decide(e ending) decision {
	d := decision{class: e.class, state: e.state, ret: e.err}
	st := &d.state
	switch {
	case e.err == nil:
		d.result = ResultUnchanged
		if e.target != "" && (e.target != e.live || e.changed) {
			d.result = ResultSucceeded
			if e.target != e.live {
				// A new commit went live: an older failure no longer
				// matters. (A pass that only restored the live revision
				// keeps the record of the head that failed, so that head
				// is not retried.)
				st.Failed = nil
			}
			st.Live = &RevisionState{Commit: e.target, DeployID: e.id, At: e.now}
		}
	case e.canceled:
		d.result, d.class = ResultInterrupted, failure.Unclassed
	case e.held:
		d.result, d.ret = ResultHeld, nil
	case e.class == failure.Verdict:
		d.result = ResultFailed
		if e.target != "" && e.target != e.live {
			st.Failed = &RevisionState{Commit: e.target, DeployID: e.id, At: e.now, Reason: e.err.Error()}
			d.ret = nil
		}
	default:
		d.result = ResultOutage
	}
	return d
}

// headRefused says whether st holds the head back because of a verdict
// on it: failed on this host, or halted fleet-wide.
func headRefused(st State, head string) bool {
	if head == "" || st.Live != nil && st.Live.Commit == head {
		return false
	}
	return st.Failed != nil && st.Failed.Commit == head || st.FleetHeld != nil && st.FleetHeld.Commit == head
}
