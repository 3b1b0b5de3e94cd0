package jobs

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// RunNow starts a run of job outside its schedule (berth jobs run),
// respecting its concurrency policy. request ties the run to the request.
// It returns the run's id ("" when the scheduler has not started yet: the
// run starts with it).
func (s *Scheduler) RunNow(job, request string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.init()
	e := s.entries[job]
	if e == nil {
		return "", fmt.Errorf("no job %q in the live revision", job)
	}
	if s.ctx == nil {
		// Not running yet: the run starts when Run does.
		s.pending = append(s.pending, pendingRun{job: job, request: request})
		return "", nil
	}
	return s.start(e.def, time.Time{}, TriggerManual, request), nil
}

// TakeRequests starts the runs `berth jobs run` asked for.
func (s *Scheduler) TakeRequests() {
	reqs, err := s.Store.TakeRequests()
	if err != nil {
		s.Log.Warn("job requests", "error", err)
	}
	for _, r := range reqs {
		if _, err := s.RunNow(r.Job, r.ID); err != nil {
			s.Log.Warn("job run request refused", "job", r.Job, "error", err)
			s.mu.Lock()
			s.record(&Run{ID: NewID(s.Now()), Job: r.Job, Trigger: TriggerManual, Status: StatusSkipped, Reason: err.Error(), Request: r.ID}, envs.JobSpec{History: 50})
			s.mu.Unlock()
		}
	}
}

// start begins a run of d under its concurrency policy (s.mu held).
func (s *Scheduler) start(d *Def, scheduled time.Time, trigger, request string) string {
	return s.startRun(d, scheduled, trigger, request, nil)
}

// startRun is start for a run that holds claim c on its scheduled time in
// the fleet (nil: none). The claim is finished with the run's result.
func (s *Scheduler) startRun(d *Def, scheduled time.Time, trigger, request string, c Claim) string {
	now := s.Now()
	r := &Run{ID: NewID(now), Job: d.Spec.Name, Trigger: trigger, Scheduled: scheduled, Status: StatusRunning,
		Revision: d.Revision, JobHash: d.Hash, Image: d.Image(), Request: request}
	if c != nil {
		r.Host, r.FenceToken = s.Fleet.Host(), c.Token()
	}
	var running []*active
	for _, a := range s.active {
		if a.run.Job == d.Spec.Name {
			running = append(running, a)
		}
	}
	if len(running) > 0 {
		switch d.Spec.Concurrency {
		case envs.ConcurrencyAllow:
			running = nil
		case envs.ConcurrencyReplace:
			for _, a := range running {
				s.Log.Info("job run replaced", "job", d.Spec.Name, "run", a.run.ID, "by", r.ID)
				a.cancel(errReplaced)
			}
		default:
			r.Status, r.Reason = StatusSkipped, fmt.Sprintf("run %s is still running (concurrency: forbid)", running[0].run.ID)
			s.Log.Info("job run skipped", "job", d.Spec.Name, "reason", r.Reason)
			s.record(r, d.Spec)
			s.finishClaim(c, *r)
			return r.ID
		}
	}
	if err := s.Store.Save(r); err != nil {
		// Without a record the run could not be reaped after a crash.
		s.Log.Error("job run not started", "job", d.Spec.Name, "error", err)
		r.Status, r.Reason = StatusFailed, fmt.Sprintf("not started: its record could not be written: %v", err)
		s.finishClaim(c, *r)
		return r.ID
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	a := &active{run: r, def: d, cancel: cancel, done: make(chan struct{})}
	s.active[r.ID] = a
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(a.done)
		defer cancel(nil)
		for _, old := range running {
			<-old.done // replace: the old run is gone before the new starts
		}
		s.executeSafely(ctx, a)
		s.mu.Lock()
		delete(s.active, r.ID)
		s.record(r, d.Spec)
		s.saveListing()
		s.mu.Unlock()
		if c != nil {
			s.finish(c, *r)
		}
	}()
	s.saveListing()
	return r.ID
}

// executeSafely is execute with a panic turned into a failed run (a
// verdict: the job's definition drove the run there), the stack in the log
// only. One bad job must never stop the scheduler or the agent.
func (s *Scheduler) executeSafely(ctx context.Context, a *active) {
	defer func() {
		if p := recover(); p != nil {
			s.Log.Error("job run panicked", "job", a.run.Job, "run", a.run.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r := a.run
			r.Status, r.Reason, r.Class = StatusFailed, fmt.Sprintf("berth failed while running the job: %v", p), failure.Verdict.String()
			if r.Finished.IsZero() {
				r.Finished = s.Now()
				if !r.Started.IsZero() {
					r.DurationMS = r.Finished.Sub(r.Started).Milliseconds()
				}
			}
		}
	}()
	s.execute(ctx, a)
}
