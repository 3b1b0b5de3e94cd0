package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/backoff"
)

// How the scheduler runs a `run_on: one` job of a fleet (docs/fleet.md,
// "Jobs once per fleet"): at each scheduled time T (computed from the
// schedule, never from "now"; @every times aligned so every host names the
// same T) each host claims T in etcd; the one whose claim lands runs it,
// with the claim's token as BERTH_FENCE_TOKEN, and writes the result over
// the claim. The others skip T silently: it is the fleet's record, not
// theirs. While etcd does not answer, a host keeps trying until T's
// starting deadline, then records T as skipped, waiting for etcd; a later
// T waiting supersedes an earlier one, so after an outage only the latest
// runs.

// fleetRetryMax caps the wait between claim attempts while etcd does not
// answer.
const fleetRetryMax = 10 * time.Second

// missedGrace: a time is missed fleet-wide only once its jitter and this
// have passed without a claim; sooner, a host may still be about to claim
// it.
const missedGrace = 5 * time.Second

// startingDeadline is how late scheduled time t of d may still start: its
// starting_deadline, else until the schedule's next time.
func startingDeadline(d *Def, t time.Time) time.Duration {
	if d.Spec.StartingDeadline > 0 {
		return d.Spec.StartingDeadline
	}
	if n := d.Schedule.NextAligned(t); n.After(t) {
		return n.Sub(t)
	}
	return time.Hour
}

// claimAndStart claims scheduled time t of e's job for this host and, if
// the claim is ours, starts the run (s.mu held; the claim is made in the
// background). skip non-empty: a claim won is recorded as skipped with
// that reason instead (missed: skip, decided once for the fleet).
func (s *Scheduler) claimAndStart(e *entry, t time.Time, trigger, skip string) {
	if t.After(e.waiting) {
		e.waiting = t
	}
	ctx, d := s.ctx, e.def
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.claimLoop(ctx, e, d, t, trigger, skip)
	}()
}

func (s *Scheduler) claimLoop(ctx context.Context, e *entry, d *Def, t time.Time, trigger, skip string) {
	job := d.Spec.Name
	deadline := startingDeadline(d, t)
	p := FleetPolicy{StartingDeadline: deadline, History: d.Spec.History}
	log := s.Log.With("job", job, "scheduled", t)
	retry := backoff.Policy{Min: time.Second, Max: fleetRetryMax}
	var waited error
	for n := 1; ; n++ {
		c, err := s.Fleet.Claim(ctx, s.Env, job, t, p)
		switch {
		case err == nil:
			if waited != nil {
				log.Info("etcd answers again: scheduled time claimed")
			}
			s.claimed(ctx, e, d, t, trigger, skip, c)
			return
		case errors.Is(err, ErrClaimed):
			log.Debug("scheduled time claimed by another host", "reason", err)
			return
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrTooLate) && waited != nil:
			s.skipTime(d, t, trigger, fmt.Sprintf("waiting for etcd: not claimed within its starting deadline (%s); etcd: %v", deadline, waited))
			return
		case errors.Is(err, ErrTooLate):
			s.skipTime(d, t, trigger, fmt.Sprintf("missed: not started within its starting deadline (%s): %v", deadline, err))
			return
		}
		if waited == nil {
			log.Warn("waiting for etcd to claim the job's scheduled time", "error", err, "starting_deadline", deadline)
		}
		waited = err
		s.mu.Lock()
		superseded := e.waiting.After(t)
		s.mu.Unlock()
		if superseded {
			s.skipTime(d, t, trigger, fmt.Sprintf("waiting for etcd: a later scheduled time superseded it; etcd: %v", err))
			return
		}
		left := deadline - s.Now().Sub(t)
		if left <= 0 {
			s.skipTime(d, t, trigger, fmt.Sprintf("waiting for etcd: not claimed within its starting deadline (%s); etcd: %v", deadline, err))
			return
		}
		if backoff.Sleep(ctx, min(retry.Delay(n), left)) != nil {
			return
		}
	}
}

// claimed starts the run of t that this host's claim c won, unless the
// job changed its mind meanwhile: removed, skip asked for, or (concurrency:
// forbid) a run of an earlier time of the job still going on another host.
func (s *Scheduler) claimed(ctx context.Context, e *entry, d *Def, t time.Time, trigger, skip string, c Claim) {
	if skip == "" && (d.Spec.Concurrency == "" || d.Spec.Concurrency == envs.ConcurrencyForbid) {
		act, err := s.Fleet.Active(ctx, s.Env, d.Spec.Name)
		if err != nil {
			s.Log.Warn("job: runs on other hosts unknown (etcd); only this host's are checked", "job", d.Spec.Name, "error", err)
		}
		skip = forbidden(act, t, s.Fleet.Host())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case skip != "":
	case ctx.Err() != nil:
		skip = "the agent stopped before the run started"
	case s.entries[d.Spec.Name] != e:
		skip = "the job was removed while its scheduled time was being claimed"
	}
	if skip != "" {
		r := &Run{ID: NewID(s.Now()), Job: d.Spec.Name, Trigger: trigger, Scheduled: t, Status: StatusSkipped, Reason: skip,
			Revision: d.Revision, JobHash: d.Hash, Image: d.Image(), Host: s.Fleet.Host(), FenceToken: c.Token()}
		s.Log.Info("job run skipped", "job", d.Spec.Name, "reason", skip)
		s.record(r, d.Spec)
		s.finishClaim(c, *r)
		return
	}
	s.startRun(d, t, trigger, "", c)
}

// forbidden is why `concurrency: forbid` skips time t on host, given the
// job's runs alive in the fleet ("" if it does not). Only a run of an
// earlier time on another host counts (this host's own are checked
// locally): claims land in the order of their times (the job's
// high-water mark), so of two claims landing close together the earlier
// runs and the later skips — each yielding to the other would leave both
// times unrun.
func forbidden(act []FleetActive, t time.Time, host string) string {
	for _, a := range act {
		if a.Scheduled.Before(t) && a.Host != host {
			return fmt.Sprintf("the run of %s on host %s is still running (concurrency: forbid)", a.Scheduled.UTC().Format(time.RFC3339), a.Host)
		}
	}
	return ""
}

// skipTime records scheduled time t of d as skipped on this host.
func (s *Scheduler) skipTime(d *Def, t time.Time, trigger, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Log.Warn("job scheduled time skipped", "job", d.Spec.Name, "scheduled", t, "reason", reason)
	r := &Run{ID: NewID(s.Now()), Job: d.Spec.Name, Trigger: trigger, Scheduled: t, Status: StatusSkipped, Reason: reason,
		Revision: d.Revision, JobHash: d.Hash, Image: d.Image(), Host: s.Fleet.Host()}
	s.record(r, d.Spec)
}

// fleetMissed applies the job's missed policy fleet-wide: the times
// since the fleet's latest claim of the job that no host claimed. At most
// one is claimed, the latest; the host whose claim lands runs it
// (run_once) or records it skipped (skip), once for the fleet.
func (s *Scheduler) fleetMissed(e *entry, d *Def) {
	s.mu.Lock()
	ctx := s.ctx
	s.mu.Unlock()
	job := d.Spec.Name
	retry := backoff.Policy{Min: time.Second, Max: 3 * fleetRetryMax}
	var last time.Time
	for n := 1; ; n++ {
		var err error
		if last, err = s.Fleet.LastScheduled(ctx, s.Env, job); err == nil {
			break
		}
		if n == 1 {
			s.Log.Warn("job: the fleet's history is unreadable (etcd); missed runs are decided when it answers", "job", job, "error", err)
		}
		if !retry.Wait(ctx, n) {
			return
		}
	}
	if runs, err := s.Store.Runs(job); err == nil {
		for _, r := range runs { // this host's own, from before the fleet
			if (r.Trigger == TriggerSchedule || r.Trigger == TriggerMissed) && r.Scheduled.After(last) {
				last = r.Scheduled
			}
		}
	}
	if last.IsZero() {
		return // a new job: nothing was missed
	}
	n, latest := d.Schedule.Missed(last, s.Now().Add(-d.Spec.Jitter-missedGrace), 1000)
	if n == 0 {
		return
	}
	count := fmt.Sprint(n)
	if n >= 1000 {
		count = "1000 or more"
	}
	skip := ""
	if d.Spec.Missed == "run_once" {
		s.Log.Info("job missed runs fleet-wide: claiming the latest to run it once", "job", job, "missed", count)
	} else {
		skip = fmt.Sprintf("%s run(s) missed while no host of the fleet ran the job (missed: skip)", count)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries[job] == e {
		s.claimAndStart(e, latest, TriggerMissed, skip)
	}
}

// finishClaim writes r over claim c in the background (s.mu may be held).
func (s *Scheduler) finishClaim(c Claim, r Run) {
	if c == nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.finish(c, r)
	}()
}

func (s *Scheduler) finish(c Claim, r Run) {
	if err := c.Finish(context.Background(), r); err != nil {
		s.Log.Warn("job result not written to the fleet", "job", r.Job, "run", r.ID, "error", err)
	}
}
