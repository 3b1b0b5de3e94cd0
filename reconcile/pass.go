package reconcile

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/failure"
)

// pass is what one Check learned on its way, for finish.
type pass struct {
	id      string
	started time.Time
	stage   string // the step being taken: list, fetch, load, plan, prepare, …
	stageAt time.Time
	// stageMu guards stage's writes against the deploy's progress
	// reports, which read it from the goroutines that pull and create.
	stageMu sync.Mutex
	// steps time the pass's own steps (list, fetch, load, plan) and its
	// journal writes before the deploy's phases.
	steps   []Phase
	journal time.Duration

	st      State // as loaded, then as the pass leaves it
	loaded  bool  // st was read: only then is it written back
	dirty   bool  // a request or the end of a hold changed st
	request []byte

	live, target string
	rev          *Revision
	env          *envs.Env
	res          *Result
	rec          *Record // the deploy's record, once the deploy began
	written      bool    // rec is in the journal already (a phase began)

	// A fleet's (fleet.go): the admission to deploy, the revision halted
	// fleet-wide, a fleet-wide rollback in force.
	adm           *fleet.Admission
	turn          *FleetTurn
	held          bool
	fleetRollback bool
}

// passSteps are a pass's own steps, timed in Record.Steps (the deploy
// times its phases itself).
var passSteps = []string{"list", "fetch", "load", "plan"}

func (a *Agent) progress(p *pass, phase string) {
	now := time.Now()
	p.endStep(now)
	p.stageMu.Lock()
	p.stage, p.stageAt = phase, now
	p.stageMu.Unlock()
	a.markAttempt(p, phase) // before a step that could take the agent down
	if a.OnProgress != nil {
		a.OnProgress(Progress{Commit: p.target, Phase: phase, Started: p.started})
	}
}

// endStep times the pass's own step in progress, if one is.
func (p *pass) endStep(now time.Time) {
	if slices.Contains(passSteps, p.stage) && !p.stageAt.IsZero() {
		p.steps = append(p.steps, Phase{Name: p.stage, Duration: now.Sub(p.stageAt)})
		p.stageAt = time.Time{}
	}
}

// newRecord is the pass's record, filled with what is known of the revision.
func (p *pass) newRecord(a *Agent) *Record {
	if p.rec != nil {
		return p.rec
	}
	rec := &Record{ID: p.id, Env: a.Env, Commit: p.target, Started: p.started, Result: ResultRunning}
	if p.rev != nil {
		rec.Author, rec.Subject, rec.Signer = p.rev.Author, p.rev.Subject, p.rev.Signer
	}
	if p.env != nil {
		rec.Env = p.env.Name
		for _, s := range p.env.Services {
			if !slices.Contains(rec.Images, s.Config.Image) {
				rec.Images = append(rec.Images, s.Config.Image)
			}
		}
		for _, j := range p.env.Jobs {
			if j.Image != "" && !slices.Contains(rec.Images, j.Image) {
				rec.Images = append(rec.Images, j.Image) // kept from pruning
			}
		}
	}
	p.rec = rec
	return rec
}

// finish ends every pass, however it ended: it turns a panic into a
// verdict, decides the outcome, writes the state and then the journal
// record, logs the one summary line once both are durable, and hands the
// outcome to OnPass. It returns what the poller must back off on.
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
	rec := p.newRecord(a)
	rec.Finished, rec.LastPass = now, now
	p.endStep(now)
	rec.Steps = slices.Clone(p.steps)
	if p.journal > 0 {
		rec.Steps = append(rec.Steps, Phase{Name: "journal", Duration: p.journal})
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

	// The outcome.
	class := failure.Of(err)
	if err != nil && class == failure.Unclassed {
		err, class = failure.AsOutage(err), failure.Outage
	}
	ret = err
	a.finishAdmission(ctx, p, err, class)
	rec.Fleet = p.turn
	st := p.st
	switch {
	case err == nil && p.target == "":
		rec.Result = ResultUnchanged // nothing to deploy yet
	case err == nil:
		rec.Result = ResultUnchanged
		if p.target != p.live || (p.res != nil && p.res.Changed) {
			rec.Result = ResultSucceeded
			if p.target != p.live {
				// A new commit went live: an older failure no longer
				// matters. (A pass that only restored the live revision
				// keeps the record of the head that failed, so that head
				// is not retried.)
				st.Failed = nil
			}
			st.Live = &RevisionState{Commit: p.target, DeployID: p.id, At: now}
		}
	case ctx.Err() != nil:
		rec.Result, class = ResultInterrupted, failure.Unclassed // retried on the next start
	case p.held:
		rec.Result, ret = ResultHeld, nil // halted fleet-wide: not this host's failure (fleet.go)
	case class == failure.Verdict:
		rec.Result = ResultFailed
		if p.target != "" && p.target != p.live {
			st.Failed = &RevisionState{Commit: p.target, DeployID: p.id, At: now, Reason: err.Error()}
			ret = nil // recorded: the poller goes on at its pace
		}
		// A verdict on the live revision (its containers keep dying) or
		// on no revision is returned: the poller backs off and the next
		// pass tries again; the live commit is never marked failed.
	default:
		rec.Result = ResultOutage
	}
	if err != nil {
		rec.Reason = err.Error()
		if class != failure.Unclassed {
			rec.Class = class.String()
		}
	}

	// The state, then the journal: once both are durable the pass is told.
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
				log.Warn("request applied but not removed: it is applied again", "error", derr)
			}
		}
	}
	if st.Live != nil {
		rec.Live = st.Live.Commit
	}
	out := Pass{Result: rec.Result, Record: *rec, New: true, Class: class, Err: err}
	if a.Journal != nil {
		if jerr := a.journal(p, rec, &out); jerr != nil {
			jerr = stateDirError(a.StateDir, jerr)
			log.Error("journal record not written: kept in memory for the next pass", "error", jerr)
			if ret == nil {
				ret = jerr
			}
		}
	}
	out.Notify = a.summarize(p, out, now)
	if rec.Result == ResultSucceeded || rec.Result == ResultUnchanged && p.target != "" {
		if a.OnLive != nil && p.env != nil {
			a.OnLive(p.env, p.target)
		}
	}
	if rec.Result == ResultSucceeded && (p.target != p.live || rec.Changed) {
		a.prune(ctx, st, log)
	}
	if a.OnPass != nil {
		a.OnPass(out)
	}
	return ret
}

// journal writes the pass's record, or counts the pass into the newest
// record when it ended the same way (see sameOutcome), and sets out.
func (a *Agent) journal(p *pass, rec *Record, out *Pass) error {
	if u := a.unwritten; u != nil {
		if err := a.Journal.Write(u); err != nil {
			return err
		}
		a.unwritten = nil
	}
	if !p.written {
		prev, err := a.Journal.Newest()
		if err != nil {
			return err
		}
		if sameOutcome(prev, rec) {
			prev.Passes, prev.LastPass, prev.Reason = prev.Count()+1, rec.Finished, rec.Reason
			out.Record, out.New = *prev, false
			return a.Journal.Write(prev)
		}
	}
	out.Record = *rec
	if err := a.Journal.Write(rec); err != nil {
		a.unwritten = rec
		return err
	}
	if err := a.Journal.Prune(); err != nil {
		a.logger().Warn("journal prune", "error", err)
	}
	return nil
}

// sameOutcome says whether a pass ending as rec continues the run of
// passes prev stands for: the same outage or verdict in the same phase of
// the same commit, or nothing to do on the commit prev left live.
func sameOutcome(prev, rec *Record) bool {
	if prev == nil || prev.Commit != rec.Commit {
		return false
	}
	switch rec.Result {
	case ResultUnchanged:
		return prev.Result == ResultUnchanged || prev.Result == ResultSucceeded && prev.Live == rec.Commit
	case ResultOutage, ResultFailed:
		return prev.Result == rec.Result && prev.Phase == rec.Phase
	}
	return false
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
