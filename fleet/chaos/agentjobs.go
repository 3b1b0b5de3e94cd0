package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
)

// jobLoop schedules one `run_on: one` job as package jobs does: each
// scheduled time T is computed from the schedule (aligned multiples of
// Every, on this agent's clock), never from "now"; at T plus a jitter the
// agent claims T, and the claim loop retries through an outage until T's
// starting deadline, a later time superseding it.
func (a *agent) jobLoop(ctx context.Context, j JobSpec) {
	s := &jobSched{}
	for ctx.Err() == nil {
		now := a.now()
		t := now.Truncate(j.Every).Add(j.Every)
		if !sleepCtx(ctx, t.Sub(now)+rand.N(100*time.Millisecond)) {
			return
		}
		s.mu.Lock()
		if t.After(s.waiting) {
			s.waiting = t
		}
		s.mu.Unlock()
		go a.claimLoop(ctx, j, t, s)
	}
}

type jobSched struct {
	mu      sync.Mutex
	waiting time.Time // the latest time being claimed
	running int       // runs going on on this host
}

func (a *agent) claimLoop(ctx context.Context, j JobSpec, t time.Time, s *jobSched) {
	deadline := j.Every // the job's starting deadline: until its next time
	p := fleet.JobPolicy{StartingDeadline: deadline, History: j.History}
	retry := backoff.Policy{Min: time.Second, Max: 10 * time.Second}
	var waited error
	skip := func(reason string) {
		a.led.Write(Event{Kind: "job_local_skip", Job: j.Name, T: t.UnixNano(), Note: reason})
	}
	for n := 1; ; n++ {
		cl, err := a.c.ClaimJob(ctx, Env, j.Name, t, p)
		switch {
		case err == nil:
			a.runJob(ctx, j, t, cl, s)
			return
		case errors.Is(err, fleet.ErrClaimed), ctx.Err() != nil:
			return
		case errors.Is(err, fleet.ErrTooLate):
			if waited != nil {
				skip(fmt.Sprintf("waiting for etcd: not claimed within its starting deadline: %v", waited))
			}
			return
		case !failure.IsOutage(err):
			skip("refused: " + err.Error())
			return
		}
		waited = err
		s.mu.Lock()
		superseded := s.waiting.After(t)
		s.mu.Unlock()
		if superseded {
			skip(fmt.Sprintf("waiting for etcd: a later time superseded it: %v", err))
			return
		}
		left := deadline - a.now().Sub(t)
		if left <= 0 {
			skip(fmt.Sprintf("waiting for etcd: not claimed within its starting deadline: %v", err))
			return
		}
		if !sleepCtx(ctx, min(retry.Delay(n), left)) {
			return
		}
	}
}

// runJob runs a claimed time, unless `concurrency: forbid` finds a run of
// the job still going (on another host, or here).
func (a *agent) runJob(ctx context.Context, j JobSpec, t time.Time, cl *fleet.JobClaim, s *jobSched) {
	skip := ""
	if j.Forbid {
		act, err := a.c.JobActiveRuns(ctx, Env, j.Name)
		if err != nil {
			a.log.Warn("job: runs on other hosts unknown (etcd); only this host's are checked", "job", j.Name, "error", err)
		}
		for _, x := range act { // as package jobs: only a run of an earlier time counts
			if x.Scheduled.Before(t) && x.Host != a.host {
				skip = fmt.Sprintf("the run of %s on host %s is still running (concurrency: forbid)", x.Scheduled.UTC().Format(time.RFC3339Nano), x.Host)
				break
			}
		}
		s.mu.Lock()
		if skip == "" && s.running > 0 {
			skip = "a run is still going on this host (concurrency: forbid)"
		}
		s.mu.Unlock()
	}
	if skip != "" {
		a.led.Write(Event{Kind: "job_skip", Job: j.Name, T: t.UnixNano(), Token: cl.Token, Forbid: true, Note: skip})
		_ = cl.Finish(context.WithoutCancel(ctx), fleet.JobResult{Status: "skipped", Reason: skip})
		return
	}
	s.mu.Lock()
	s.running++
	s.mu.Unlock()
	a.led.Write(Event{Kind: "job_start", Job: j.Name, T: t.UnixNano(), Token: cl.Token, Forbid: j.Forbid})
	start := time.Now()
	time.Sleep(j.Run)
	a.led.Write(Event{Kind: "job_end", Job: j.Name, T: t.UnixNano(), Token: cl.Token})
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	if err := cl.Finish(context.WithoutCancel(ctx), fleet.JobResult{Status: fleet.JobSucceeded, Started: start, Ended: time.Now()}); err != nil {
		a.log.Warn("job result", "error", err)
	}
}
