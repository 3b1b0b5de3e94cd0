package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/secrets"
)

// Recover reaps what an agent killed mid-run left: every record still
// "running" becomes "interrupted" (its output kept as far as the engine has
// it) and every run container of the environment is removed. Run calls it
// before it schedules anything. A run whose container cannot be killed
// keeps its "running" record, so the next Recover tries again; the errors
// come back joined, an engine that does not answer as an outage.
func (s *Scheduler) Recover(ctx context.Context) error {
	s.mu.Lock()
	s.init()
	s.mu.Unlock()
	cs, err := s.Reaper.ListJobRuns(ctx, s.Env)
	if err != nil {
		return err
	}
	byRun := map[string]engine.JobContainer{}
	for _, c := range cs {
		byRun[c.Run] = c
	}
	names, err := s.Store.Jobs()
	if err != nil {
		return err
	}
	var errs []error
	for _, job := range names {
		runs, err := s.Store.Runs(job)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for i := range runs {
			r := &runs[i]
			if r.Done() {
				continue
			}
			log := s.Log.With("job", r.Job, "run", r.ID)
			if c, ok := byRun[r.ID]; ok {
				if err := s.Reaper.Kill(ctx, c.ID); err != nil {
					errs = append(errs, fmt.Errorf("job %s run %s: %w", r.Job, r.ID, err))
					delete(byRun, r.ID)
					continue // still running: not interrupted yet
				}
				var err error
				if r.Secrets {
					// The values to redact died with the old agent.
					err = s.Store.SaveOutput(r.Job, r.ID, []byte("[berth: output not kept: the run had secrets and the agent restarted before it could redact them]\n"), nil)
					err = errors.Join(err, s.Reaper.Remove(ctx, c.ID))
				} else {
					err = s.collect(ctx, r, c.ID, nil)
				}
				if err != nil {
					// The record still ends; a container left behind is
					// removed below on the next Recover, as one without a
					// running record.
					errs = append(errs, fmt.Errorf("job %s run %s: %w", r.Job, r.ID, err))
				}
				delete(byRun, r.ID)
			}
			r.Status, r.Reason, r.Finished = StatusInterrupted, "the agent stopped during the run; its container was removed on restart", s.Now()
			if !r.Started.IsZero() {
				r.DurationMS = r.Finished.Sub(r.Started).Milliseconds()
			}
			log.Warn("job run was interrupted by an agent restart")
			if err := s.Store.Save(r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, c := range byRun {
		s.Log.Warn("removing a job container without a running record", "job", c.Job, "run", c.Run)
		if err := s.Reaper.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// collect stores a reaped run container's output, with the run's secret
// values redacted, and removes the container.
func (s *Scheduler) collect(ctx context.Context, r *Run, id string, values []string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	out, errb, dropped, err := s.Reaper.Logs(ctx, id, s.MaxOutput)
	if err != nil {
		errs = append(errs, err)
	}
	r.StdoutDropped, r.StderrDropped = dropped[0], dropped[1]
	out, errb = []byte(secrets.Redact(string(out), values)), []byte(secrets.Redact(string(errb), values))
	if err := s.Store.SaveOutput(r.Job, r.ID, out, errb); err != nil {
		errs = append(errs, err)
	}
	if err := s.Reaper.Remove(ctx, id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
