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
	if _, err := s.Runner.EnsureImage(ctx, d.Image()); err != nil {
		fail(fmt.Errorf("image %s: %w", d.Image(), err))
		return
	}
	if err := s.Runner.EnsureProject(ctx, d.project); err != nil {
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
	res, err := s.Runner.RunOnce(ctx, req, engine.OneShot{
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
