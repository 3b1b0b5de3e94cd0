package reconcile

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"syscall"
	"time"

	"berth.dev/berth/internal/failure"
)

// finish ends every pass, however it ended: it turns a panic into a
// verdict, decides the outcome (decide), persists it (the state, then the
// journal record) and reports it (the summary line once both are
// durable, OnLive, the prune, OnPass). It returns what the poller must
// back off on.
func (a *Agent) finish(ctx context.Context, p *pass, err error, panicked any) (ret error) {
	log := a.logger()
	// The agent did not die on this pass's revision (poison.go). The
	// mark goes last: the state and the journal first.
	defer a.clearAttempt()
	if a.died != nil && a.died.Commit == p.target {
		a.died = nil
	}
	if panicked != nil {
		log.Error("panic recovered: recorded as a verdict on the revision", "commit", short(p.target), "phase", p.stage,
			"panic", fmt.Sprint(panicked), "stack", string(debug.Stack()))
		err = failure.AsVerdict(fmt.Errorf("panic in %s: %v", p.stage, panicked))
	}
	defer func() {
		// finish itself must never take the daemon down.
		if r := recover(); r != nil {
			log.Error("panic while recording a pass", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			ret = failure.AsOutage(fmt.Errorf("record the pass: panic: %v", r))
		}
	}()
	now := time.Now().UTC()
	rec := a.record(p, now)
	class := failure.Of(err)
	if err != nil && class == failure.Unclassed {
		err, class = failure.AsOutage(err), failure.Outage
	}
	a.finishAdmission(ctx, p, err, class)
	rec.Fleet = p.turn
	d := decide(ending{err: err, class: class, canceled: ctx.Err() != nil, held: p.held, target: p.target, live: p.live,
		changed: p.res != nil && p.res.Changed, state: p.st, id: p.id, now: now})
	rec.Result = d.result
	if err != nil {
		rec.Reason = err.Error()
		if d.class != failure.Unclassed {
			rec.Class = d.class.String()
		}
	}
	out, st, ret := a.persist(p, rec, d, err)
	a.report(ctx, p, out, st, now)
	return ret
}

// record is the pass's record as it ended, before the outcome.
func (a *Agent) record(p *pass, now time.Time) *Record {
	rec := p.newRecord(a)
	rec.Finished, rec.LastPass = now, now
	p.endStep(now)
	rec.Steps = slices.Clone(p.steps)
	if p.journal > 0 {
		rec.Steps = append(rec.Steps, Timing{Name: phaseJournal, Duration: p.journal})
	}
	if res := p.res; res != nil {
		rec.Changed, rec.Phases, rec.OneShots, rec.Done, rec.Undone, rec.WatchUntil = res.Changed, res.Phases, res.OneShots, res.Done, res.Undone, res.WatchUntil
		if rec.Actions == nil {
			for _, act := range res.Actions {
				rec.Actions = append(rec.Actions, act.String())
			}
		}
	}
	rec.Phase = p.stage
	if p.res != nil && p.res.Phase != "" {
		rec.Phase = p.res.Phase
	}
	return rec
}

// persist makes the decision durable: the state, then the journal. A
// state dir that refuses the state turns the pass into an outage (the
// old state stays). It returns the pass's outcome, the state it left and
// what the poller backs off on.
func (a *Agent) persist(p *pass, rec *Record, d decision, err error) (Pass, State, error) {
	ret, st, class := d.ret, d.state, d.class
	if p.loaded && (p.dirty || !sameState(p.st, st)) {
		if serr := SaveState(a.StateDir, st); serr != nil {
			serr = stateDirError(a.StateDir, serr)
			if rec.Result == ResultSucceeded {
				serr = fmt.Errorf("%s is running but could not be recorded live: %w", short(p.target), serr)
			}
			rec.Result, rec.Class, rec.Reason, class = ResultOutage, failure.Outage.String(), serr.Error(), failure.Outage
			ret, err = serr, serr
			st = p.st
		} else if p.request != nil {
			if derr := dropRequest(a.StateDir, p.request); derr != nil {
				a.logger().Warn("request applied but not removed: it is applied again", "error", derr)
			}
		}
	}
	if st.Live != nil {
		rec.Live = st.Live.Commit
	}
	out := Pass{Result: rec.Result, Record: *rec, New: true, Class: class, Err: err, Head: p.head, HeadRefused: headRefused(st, p.head)}
	if rec.Result == ResultOutage {
		out.Waiting = p.waiting
	}
	if a.Journal != nil {
		if jerr := a.journal(p, rec, &out); jerr != nil {
			jerr = stateDirError(a.StateDir, jerr)
			a.logger().Error("journal record not written: kept in memory for the next pass", "error", jerr)
			if ret == nil {
				ret = jerr
			}
		}
	}
	return out, st, ret
}

// report tells of the outcome once it is durable: the one summary line,
// the live revision to OnLive (the job scheduler), the prune after a
// deploy, then OnPass.
func (a *Agent) report(ctx context.Context, p *pass, out Pass, st State, now time.Time) {
	out.Notify = a.summarize(p, out, now)
	rec := out.Record
	if out.Result == ResultSucceeded || out.Result == ResultUnchanged && p.target != "" {
		if a.OnLive != nil && p.env != nil {
			a.OnLive(p.env, p.target)
		}
	}
	if out.Result == ResultSucceeded && (p.target != p.live || rec.Changed) {
		a.prune(ctx, st, a.logger())
	}
	if a.OnPass != nil {
		a.OnPass(out)
	}
}

// summarize logs the pass's one summary line (state and journal are
// durable by now) and says whether it is worth a notification. Warn only
// when the failure state changes: a counted outage pass logs at debug.
func (a *Agent) summarize(p *pass, out Pass, now time.Time) (notify bool) {
	rec := out.Record
	log := a.logger().With("deploy_id", rec.ID, "commit", short(p.target), "phase", rec.Phase)
	notifyAfter := a.NotifyOutageAfter
	if notifyAfter <= 0 {
		notifyAfter = 3
	}
	switch out.Result {
	case ResultSucceeded:
		log.Info("deployed", "subject", rec.Subject, "changed", rec.Changed, "duration", now.Sub(p.started).Round(time.Millisecond))
		return rec.Changed
	case ResultUnchanged:
		log.Debug("no change")
	case ResultHeld:
		log.Info("revision held: the fleet halted it; keeping the live revision", "reason", rec.Reason)
	case ResultInterrupted:
		log.Warn("pass interrupted: the agent is stopping; the next start goes on", "done", rec.Done, "undone", rec.Undone)
	case ResultFailed:
		switch {
		case !out.New:
			log.Debug("verdict again", "passes", rec.Count(), "error", out.Err)
		case p.target == p.live:
			log.Warn("restoring the live revision failed; retrying with backoff", "class", "verdict", "error", out.Err)
		case len(rec.Done) == 0:
			log.Warn("revision refused", "class", "verdict", "error", out.Err)
		default:
			log.Error("deploy failed and rolled back", "class", "verdict", "done", rec.Done, "undone", rec.Undone, "error", out.Err)
		}
		return out.New
	case ResultOutage:
		if out.New {
			log.Warn("outage: the host keeps what it runs; retrying with backoff", "class", "outage", "done", rec.Done, "undone", rec.Undone, "error", out.Err)
		} else {
			log.Debug("outage goes on", "passes", rec.Count(), "error", out.Err)
		}
		return rec.Count() == notifyAfter
	}
	return false
}

// stateDirError says plainly that the state dir is full or read-only: the
// pass is an outage, and the agent goes on once it is writable again.
func stateDirError(dir string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return failure.AsOutage(fmt.Errorf("state dir %s is full (free space there; berth retries): %w", dir, err))
	case errors.Is(err, syscall.EROFS):
		return failure.AsOutage(fmt.Errorf("state dir %s is read-only (berth retries): %w", dir, err))
	}
	return failure.AsOutage(fmt.Errorf("state dir %s: %w", dir, err))
}

func sameState(a, b State) bool {
	eq := func(x, y *RevisionState) bool { return x == y || x != nil && y != nil && *x == *y }
	return eq(a.Live, b.Live) && eq(a.Failed, b.Failed) && (a.Hold == b.Hold || a.Hold != nil && b.Hold != nil && *a.Hold == *b.Hold)
}
