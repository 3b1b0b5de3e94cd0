package reconcile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/failure"
)

// Fleet is the env's coordination with the other hosts that run it
// (docs/fleet.md); *fleet.Client is one. A pass asks it before it deploys
// anything but the live revision:
//
//   - Control: the fleet-wide pause (stop following the branch, keep the
//     live revision and self-heal), the retry generation (it grew: forget
//     this host's failed and held marks) and a fleet-wide rollback;
//   - Admit: wait for this host's turn in the rollout (canaries, pause,
//     max_parallel), be told to deploy the fleet's good revision first (a
//     host joining mid-rollout), or be refused a revision halted
//     fleet-wide. The admission is finished with how the deploy ended: a
//     verdict halts the revision fleet-wide.
//
// When etcd does not answer, nothing new is deployed ("waiting for etcd",
// an outage the poller backs off on); the live revision keeps being
// served, and self-healed while no new commit waits.
type Fleet interface {
	Admit(ctx context.Context, env string, req fleet.RolloutRequest) (*fleet.Admission, error)
	Control(ctx context.Context, env string) (fleet.Control, error)
}

// Pause is `berth pause` on this host: the agent stops following the
// branch and keeps its live revision (and self-heals it) until `berth
// resume`.
type Pause struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// FleetHeld is a revision the fleet halted, as this host learned it. The
// host does not ask about that revision again until the head moves or
// the fleet's retry generation grows.
type FleetHeld struct {
	Commit string    `json:"commit"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// FleetTurn is a deploy's turn in a fleet's rollout, in its journal
// record: when the pass asked, when it was let in (a canary, a slot, a
// joining host told to deploy the fleet's good revision), and when it
// gave its slot back (stamped just after taking the slot and just before
// giving it back). Admitted to Released lies inside the time the host
// counted against max_parallel.
type FleetTurn struct {
	Asked    time.Time `json:"asked"`
	Admitted time.Time `json:"admitted,omitzero"`
	Released time.Time `json:"released,omitzero"`
	Slot     int       `json:"slot"`
	Canary   bool      `json:"canary,omitempty"`
	Joining  bool      `json:"joining,omitempty"`
	// Outcome is what the fleet was told: succeeded, failed (the revision
	// halts fleet-wide) or abandoned (an outage: tried again later).
	Outcome string `json:"outcome,omitempty"`
}

// waitingForEtcd marks an etcd outage as what holds the head back.
func waitingForEtcd(err error) error {
	if err == nil || !failure.IsOutage(err) {
		return err
	}
	return fmt.Errorf("%s: %w", WaitEtcd, err)
}

// gate decides, before anything is fetched, whether the pass follows the
// branch: the host's own pause, and with a fleet its pause, retry
// generation, fleet-wide rollback and halt. It returns the revision to go
// to (the live one to only self-heal) and the commit to go back to when
// `since` must be empty (a rollback).
func (a *Agent) gate(ctx context.Context, p *pass, head, target string) (string, bool, error) {
	st := &p.st
	log := a.logger()
	if st.Pause != nil && target == head && head != p.live {
		log.Debug("paused: the head is not followed", "commit", short(head), "by", st.Pause.By)
		return p.live, false, nil
	}
	if a.Fleet == nil || st.Hold != nil || head == "" {
		return target, false, nil
	}
	ctl, err := a.Fleet.Control(ctx, a.Env)
	if err != nil {
		if target != head || head == p.live {
			// Failed or held here already: keep serving the live revision
			// (self-heal included) while etcd is away.
			return target, false, nil
		}
		a.waiting(p, WaitEtcd)
		return "", false, waitingForEtcd(fmt.Errorf("read the fleet's control: %w", err))
	}
	if ctl.Retry != st.FleetRetry {
		first := st.FleetRetry == 0
		st.FleetRetry, p.dirty = ctl.Retry, true
		if !first && (st.Failed != nil || st.FleetHeld != nil) {
			log.Info("fleet retry: this host's failed and held marks are forgotten", "commit", short(head))
			st.Failed, st.FleetHeld, target = nil, nil, head
		}
	}
	if h := st.FleetHeld; h != nil && h.Commit != head {
		log.Info("new commit: the revision the fleet halted is no longer held", "commit", short(head), "held", short(h.Commit))
		st.FleetHeld, p.dirty = nil, true
	}
	switch {
	case ctl.Rollback != nil && ctl.Rollback.Head == head && ctl.Rollback.Commit != p.live:
		if !p.fleetRollback {
			log.Info("fleet rollback: deploying the revision the fleet rolled back to", "commit", short(ctl.Rollback.Commit), "by", ctl.Rollback.By)
		}
		p.fleetRollback = true
		return ctl.Rollback.Commit, true, nil
	case ctl.Rollback != nil && ctl.Rollback.Head == head:
		return p.live, false, nil // rolled back already; the head stays halted
	case st.FleetHeld != nil:
		return p.live, false, nil
	case ctl.Pause != nil && target == head && head != p.live:
		log.Debug("paused fleet-wide: the head is not followed", "commit", short(head), "by", ctl.Pause.By)
		return p.live, false, nil
	}
	return target, false, nil
}

// admit waits for this host's turn to deploy p.target (after the revision
// is loaded: its x-berth.rollout is the policy). A joining host may be
// told to deploy the fleet's good revision instead: it is fetched and
// loaded here. A revision halted fleet-wide ends the pass as held.
func (a *Agent) admit(ctx context.Context, p *pass) error {
	if a.Fleet == nil || p.target == p.live || p.st.Hold != nil {
		return nil
	}
	a.progress(p, PhaseFleet)
	req := fleet.RolloutRequest{Revision: p.target, Policy: policyOf(p.env.Rollout), Live: p.live,
		Waiting: func(s string) { a.waiting(p, Wait(s)) }}
	asked := time.Now().UTC()
	adm, err := a.Fleet.Admit(ctx, a.Env, req)
	var halted *fleet.HaltedError
	if errors.As(err, &halted) {
		// The halt's own reason and host: the held line says "halted
		// fleet-wide" itself.
		p.st.FleetHeld = &FleetHeld{Commit: p.target, Reason: fmt.Sprintf("%s (on %s)", halted.Halt.Reason, halted.Halt.Host), At: time.Now().UTC()}
		p.dirty, p.held = true, true
		return failure.AsVerdict(halted)
	}
	if errors.Is(err, fleet.ErrSuperseded) {
		// A newer rollout began while this host waited for the canaries:
		// the pass ends (an outage, tried again) and the next asks for
		// what the host wants now.
		return fmt.Errorf("fleet: %w", err)
	}
	if err != nil {
		if failure.IsOutage(err) {
			a.waiting(p, WaitEtcd)
		}
		return waitingForEtcd(fmt.Errorf("fleet: %w", err))
	}
	p.adm = adm
	p.turn = &FleetTurn{Asked: asked, Admitted: time.Now().UTC(), Slot: adm.Slot, Canary: adm.Canary, Joining: adm.Joining}
	if adm.Revision == p.target {
		return nil
	}
	a.logger().Info("joining the fleet: deploying its good revision before the head", "commit", short(adm.Revision), "head", short(p.target))
	p.target = adm.Revision
	a.progress(p, "fetch")
	rev, err := a.Source.Fetch(ctx, adm.Revision, "")
	if err != nil {
		return asOutage(err)
	}
	p.rev, p.rec = rev, nil
	a.progress(p, "load")
	env, err := a.Load(ctx, rev)
	if err != nil {
		return asVerdict(err)
	}
	p.env = env
	return nil
}

// finishAdmission tells the fleet how the admitted deploy ended: a verdict
// halts the revision fleet-wide; an outage or a shutdown gives the slot
// back for a later try.
func (a *Agent) finishAdmission(ctx context.Context, p *pass, err error, class failure.Class) {
	if p.adm == nil {
		return
	}
	adm := p.adm
	p.adm = nil
	o, reason := admissionOutcome(ctx, err, class)
	if p.turn != nil {
		// Stamped before the slot is given back: admitted to released
		// lies inside the time the slot was held.
		p.turn.Released, p.turn.Outcome = time.Now().UTC(), [...]string{"succeeded", "failed", "abandoned"}[o]
	}
	if ferr := adm.Finish(context.WithoutCancel(ctx), o, reason); ferr != nil {
		a.logger().Warn("fleet: the deploy's result was not recorded", "commit", short(adm.Revision), "error", ferr)
	}
}

// admissionOutcome is how an admitted deploy that ended with err counts
// for the fleet.
func admissionOutcome(ctx context.Context, err error, class failure.Class) (fleet.Outcome, string) {
	switch {
	case err == nil:
		return fleet.Succeeded, ""
	case ctx.Err() == nil && class == failure.Verdict:
		return fleet.Failed, err.Error()
	}
	return fleet.Abandoned, err.Error()
}

// waiting notes what the pass waits for ("" when it stops) and tells
// OnProgress.
func (a *Agent) waiting(p *pass, what Wait) {
	p.waiting = what
	if a.OnProgress != nil {
		a.OnProgress(Progress{Commit: p.target, Phase: p.stage, Started: p.started, Waiting: what})
	}
}

func policyOf(r *envs.Rollout) fleet.Policy {
	if r == nil {
		return fleet.Policy{}
	}
	return fleet.Policy{Canary: r.Canary, MaxParallel: r.MaxParallel, Pause: r.Pause}
}
