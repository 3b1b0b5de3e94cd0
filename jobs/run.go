package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/secrets"
)

// execute makes one run: image, secrets, container, wait (with timeout),
// output, removal. It fills in r; the caller records it.
func (s *Scheduler) execute(ctx context.Context, a *active) {
	r, d := a.run, a.def
	log := s.Log.With("job", r.Job, "run", r.ID)
	r.Started = s.Now()
	defer func() {
		r.Finished = s.Now()
		r.DurationMS = r.Finished.Sub(r.Started).Milliseconds()
	}()
	fail := func(err error) { r.Status, r.Reason, r.Class = StatusFailed, err.Error(), classOf(err) }
	if s.Signatures != nil {
		if err := s.Signatures.Check(ctx, d.Image(), d.images); err != nil {
			fail(fmt.Errorf("image %s: %w", d.Image(), err))
			return
		}
	}
	if _, err := s.Engine.EnsureImage(ctx, d.Image()); err != nil {
		fail(fmt.Errorf("image %s: %w", d.Image(), err))
		return
	}
	if err := s.Engine.EnsureProject(ctx, d.project); err != nil {
		fail(err)
		return
	}
	var secretEnv, secretFiles []string
	if d.service != nil {
		for _, kind := range []struct {
			refs map[string]envs.SecretRef
			into *[]string
		}{{d.service.Berth.Secrets, &secretEnv}, {d.service.Berth.SecretFiles, &secretFiles}} {
			if len(kind.refs) == 0 {
				continue
			}
			if s.Secrets == nil {
				fail(fmt.Errorf("service %s declares secrets but no secrets backend is configured", d.service.Name))
				return
			}
			vals, _, err := s.Secrets.Resolve(ctx, d.service.Name, kind.refs)
			if err != nil {
				fail(fmt.Errorf("service %s: %w", d.service.Name, err))
				return
			}
			*kind.into = vals
		}
	}
	req, err := engine.JobRequest(d.project, d.service, d.Spec, engine.JobPlacement{
		Project: d.project.Name, Env: s.Env, Revision: d.Revision, Job: r.Job, Run: r.ID, SecretEnv: secretEnv, SecretFiles: secretFiles})
	if err != nil {
		fail(err)
		return
	}
	if r.FenceToken != 0 {
		req.Config.Env = append(req.Config.Env, fmt.Sprintf("%s=%d", FenceEnv, r.FenceToken))
	}
	r.Container, r.Secrets = req.Name, len(secretEnv)+len(secretFiles) > 0
	res, err := s.Engine.RunOnce(ctx, req, engine.OneShot{
		Timeout: d.Spec.Timeout, Grace: s.StopGrace, MaxOutput: s.MaxOutput,
		Secrets: secrets.Values(append(secretEnv, secretFiles...)),
		Started: func(string) {
			// On record before the wait: a killed agent's successor
			// reaps the run by this record.
			if err := s.Store.Save(r); err != nil {
				log.Warn("job record", "error", err)
			}
			log.Info("job run started", "trigger", r.Trigger, "image", r.Image)
		},
	})
	switch {
	case err != nil && ctx.Err() != nil:
		r.Status, r.Reason = StatusInterrupted, stopCause(ctx).Error()
		return
	case err != nil:
		fail(err)
		return
	}
	r.StdoutDropped, r.StderrDropped = res.StdoutDropped, res.StderrDropped
	if err := s.Store.SaveOutput(r.Job, r.ID, res.Stdout, res.Stderr); err != nil {
		log.Warn("job output", "error", err)
	}
	switch {
	case res.Stopped != nil:
		// Replaced, or the agent is stopping.
		r.Status, r.Reason = StatusInterrupted, stopCause(ctx).Error()
	case res.TimedOut:
		r.Status, r.Reason = StatusTimeout, fmt.Sprintf("stopped after the %s timeout", d.Spec.Timeout)
	case res.ExitCode == 0:
		r.ExitCode, r.Status = &res.ExitCode, StatusSucceeded
	default:
		r.ExitCode = &res.ExitCode
		r.Status, r.Reason, r.Class = StatusFailed, fmt.Sprintf("exit code %d", res.ExitCode), failure.Verdict.String()
	}
}

// stopCause is why ctx ended: a replacement, else the agent stopping.
func stopCause(ctx context.Context) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(cause, context.Canceled) {
		return errStopping
	}
	return cause
}

// collect stores a reaped run container's output, with the run's secret
// values redacted, and removes the container.
func (s *Scheduler) collect(ctx context.Context, r *Run, id string, values []string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	out, errb, dropped, err := s.Engine.Logs(ctx, id, s.MaxOutput)
	if err != nil {
		errs = append(errs, err)
	}
	r.StdoutDropped, r.StderrDropped = dropped[0], dropped[1]
	out, errb = []byte(secrets.Redact(string(out), values)), []byte(secrets.Redact(string(errb), values))
	if err := s.Store.SaveOutput(r.Job, r.ID, out, errb); err != nil {
		errs = append(errs, err)
	}
	if err := s.Engine.Remove(ctx, id); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// record saves a finished run and trims the job's history (s.mu held).
func (s *Scheduler) record(r *Run, spec envs.JobSpec) {
	if err := s.Store.Save(r); err != nil {
		s.Log.Error("job record", "job", r.Job, "run", r.ID, "error", err)
	}
	if err := s.Store.Prune(r.Job, spec.History); err != nil {
		s.Log.Warn("job history prune", "job", r.Job, "error", err)
	}
	lvl := hclog.Info
	if r.Status == StatusFailed || r.Status == StatusTimeout {
		lvl = hclog.Warn
	}
	if r.Status != StatusSkipped {
		code := "none"
		if r.ExitCode != nil {
			code = fmt.Sprint(*r.ExitCode)
		}
		s.Log.Log(lvl, "job run finished", "job", r.Job, "run", r.ID, "status", r.Status, "exit_code", code,
			"duration", time.Duration(r.DurationMS)*time.Millisecond, "reason", r.Reason)
	}
	if s.OnFinish != nil {
		s.OnFinish(*r, spec)
	}
}

// classOf is the failure class of err for a run record ("" when unmarked).
func classOf(err error) string {
	if c := failure.Of(err); c != failure.Unclassed {
		return c.String()
	}
	return ""
}

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
	cs, err := s.Engine.ListJobRuns(ctx, s.Env)
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
				if err := s.Engine.Kill(ctx, c.ID); err != nil {
					errs = append(errs, fmt.Errorf("job %s run %s: %w", r.Job, r.ID, err))
					delete(byRun, r.ID)
					continue // still running: not interrupted yet
				}
				var err error
				if r.Secrets {
					// The values to redact died with the old agent.
					err = s.Store.SaveOutput(r.Job, r.ID, []byte("[berth: output not kept: the run had secrets and the agent restarted before it could redact them]\n"), nil)
					err = errors.Join(err, s.Engine.Remove(ctx, c.ID))
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
		if err := s.Engine.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
