package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
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
	fail := func(err error) { r.Status, r.Reason = StatusFailed, err.Error() }
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
	// Create and start are not cut short by a stop: a half-made container
	// would be left behind. The wait below is where a stop is seen.
	bg := context.WithoutCancel(ctx)
	cctx, ccancel := context.WithTimeout(bg, 2*time.Minute)
	defer ccancel()
	id, err := s.Engine.Create(cctx, req)
	if err != nil {
		s.Engine.Remove(cctx, req.Name) // in case the engine made it anyway
		fail(err)
		return
	}
	r.Container, r.Secrets = req.Name, len(secretEnv)+len(secretFiles) > 0
	defer s.collect(bg, r, id, log, secrets.Values(append(secretEnv, secretFiles...)))
	if err := s.Engine.Start(cctx, id); err != nil {
		fail(err)
		return
	}
	if err := s.Store.Save(r); err != nil {
		log.Warn("job record", "error", err)
	}
	log.Info("job run started", "trigger", r.Trigger, "image", r.Image)
	waitCtx, cancel := ctx, context.CancelFunc(func() {})
	if d.Spec.Timeout > 0 {
		waitCtx, cancel = context.WithTimeout(ctx, d.Spec.Timeout)
	}
	defer cancel()
	code, err := s.Engine.WaitExit(waitCtx, id)
	switch {
	case err == nil:
		r.ExitCode = &code
		if code == 0 {
			r.Status = StatusSucceeded
		} else {
			r.Status, r.Reason = StatusFailed, fmt.Sprintf("exit code %d", code)
		}
	case ctx.Err() != nil:
		// Replaced, or the agent is stopping: stop it gracefully.
		grace := s.StopGrace
		sctx, scancel := context.WithTimeout(bg, grace+30*time.Second)
		if err := s.Engine.Stop(sctx, id, &grace); err != nil {
			log.Warn("stop job container", "error", err)
		}
		scancel()
		cause := context.Cause(ctx)
		if errors.Is(cause, context.Canceled) {
			cause = errStopping
		}
		r.Status, r.Reason = StatusInterrupted, cause.Error()
	case waitCtx.Err() != nil:
		kctx, kcancel := context.WithTimeout(bg, 30*time.Second)
		if err := s.Engine.Kill(kctx, id); err != nil {
			log.Warn("kill job container", "error", err)
		}
		kcancel()
		r.Status, r.Reason = StatusTimeout, fmt.Sprintf("killed after the %s timeout", d.Spec.Timeout)
	default:
		fail(err)
	}
}

// collect stores a run container's output, with the run's secret values
// redacted, and removes the container.
func (s *Scheduler) collect(ctx context.Context, r *Run, id string, log hclog.Logger, values []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, errb, dropped, err := s.Engine.Logs(ctx, id, s.MaxOutput)
	if err != nil {
		log.Warn("job output", "error", err)
	}
	r.StdoutDropped, r.StderrDropped = dropped[0], dropped[1]
	out, errb = []byte(secrets.Redact(string(out), values)), []byte(secrets.Redact(string(errb), values))
	if err := s.Store.SaveOutput(r.Job, r.ID, out, errb); err != nil {
		log.Warn("job output", "error", err)
	}
	if err := s.Engine.Remove(ctx, id); err != nil {
		log.Warn("remove job container", "error", err)
	}
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

// Recover reaps what an agent killed mid-run left: every record still
// "running" becomes "interrupted" (its output kept as far as the engine has
// it) and every run container of the environment is removed. Run calls it
// before it schedules anything.
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
				s.Engine.Kill(ctx, c.ID)
				if r.Secrets {
					// The values to redact died with the old agent.
					s.Store.SaveOutput(r.Job, r.ID, []byte("[berth: output not kept: the run had secrets and the agent restarted before it could redact them]\n"), nil)
					s.Engine.Remove(ctx, c.ID)
				} else {
					s.collect(ctx, r, c.ID, log, nil)
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
