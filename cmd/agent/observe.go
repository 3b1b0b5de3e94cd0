package main

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/api"
	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/internal/metrics"
	"berth.dev/berth/jobs"
	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
)

// agentMetrics are the series /metrics serves (docs/operations.md lists
// them). Values are counted where berth's parts meet, here in cmd/agent,
// so the packages themselves stay free of metrics.
type agentMetrics struct {
	reg                          *metrics.Registry
	checks, polls, fetches       *metrics.Family
	gitErrors, pullErrors        *metrics.Family
	secretErrors                 *metrics.Family
	deploys, rollbacks, phases   *metrics.Family
	live                         *metrics.Family
	jobRuns, jobSeconds, jobLast *metrics.Family
}

func newAgentMetrics() *agentMetrics {
	r := &metrics.Registry{}
	m := &agentMetrics{
		reg:          r,
		checks:       r.Counter("berth_checks_total", "Checks of the config repo and the host, by result.", "result"),
		polls:        r.Counter("berth_git_polls_total", "Branch head listings (one per check)."),
		fetches:      r.Counter("berth_git_fetches_total", "Fetches from the config repo (only when the head moved)."),
		gitErrors:    r.Counter("berth_git_errors_total", "Config repo errors, by operation.", "op"),
		pullErrors:   r.Counter("berth_image_pull_errors_total", "Image pulls that failed (registry unreachable, auth, missing digest)."),
		secretErrors: r.Counter("berth_secret_resolution_errors_total", "Secret resolutions from Vault that failed, by service.", "service"),
		deploys:      r.Counter("berth_deploys_total", "Deploys that changed something, by result.", "result"),
		rollbacks:    r.Counter("berth_rollbacks_total", "Deploys that failed and were rolled back."),
		phases:       r.Summary("berth_deploy_phase_seconds", "Time spent in each deploy phase.", "phase"),
		live:         r.Gauge("berth_live_revision_info", "The live revision (value 1).", "env", "commit"),
		jobRuns:      r.Counter("berth_job_runs_total", "Job runs by job and status.", "job", "status"),
		jobSeconds:   r.Summary("berth_job_run_seconds", "Job run durations.", "job"),
		jobLast:      r.Gauge("berth_job_last_success_timestamp_seconds", "When each job last succeeded (Unix time).", "job"),
	}
	r.Gauge("berth_build_info", "berth's version (value 1).", "version", "commit").Set(1, version, commit)
	return m
}

func (m *agentMetrics) deployed(rec reconcile.Record) {
	m.deploys.Inc(rec.Result)
	if rec.Result == reconcile.ResultFailed {
		m.rollbacks.Inc()
	}
	for _, p := range rec.Phases {
		m.phases.Observe(p.Duration.Seconds(), p.Name)
	}
}

func (m *agentMetrics) liveRevision(env, commit string) {
	m.live.Reset()
	m.live.Set(1, env, commit)
}

func (m *agentMetrics) jobFinished(r jobs.Run, _ envs.JobSpec) {
	m.jobRuns.Inc(r.Job, string(r.Status))
	if r.Status == jobs.StatusSkipped {
		return
	}
	m.jobSeconds.Observe(float64(r.DurationMS)/1000, r.Job)
	if r.Status == jobs.StatusSucceeded {
		m.jobLast.Set(float64(r.Finished.Unix()), r.Job)
	}
}

// meteredSource counts polls and config repo errors.
type meteredSource struct {
	reconcile.Source
	m *agentMetrics
}

func (s meteredSource) Head(ctx context.Context) (string, error) {
	s.m.polls.Inc()
	h, err := s.Source.Head(ctx)
	if err != nil && ctx.Err() == nil {
		s.m.gitErrors.Inc("list")
	}
	return h, err
}

func (s meteredSource) Fetch(ctx context.Context, commit, deployed string) (*reconcile.Revision, error) {
	rev, err := s.Source.Fetch(ctx, commit, deployed)
	var refusal *reconcile.Refusal
	if err != nil && ctx.Err() == nil && !errors.As(err, &refusal) {
		s.m.gitErrors.Inc("fetch")
	}
	return rev, err
}

// meteredSecrets counts failed resolutions (never a value: the error is
// not even looked at).
type meteredSecrets struct {
	reconcile.Secrets
	m *agentMetrics
}

func (s meteredSecrets) Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	env, digest, err := s.Secrets.Resolve(ctx, service, refs)
	if err != nil && ctx.Err() == nil {
		s.m.secretErrors.Inc(service)
	}
	return env, digest, err
}

// meteredImages counts failed pulls.
type meteredImages struct {
	*engine.Engine
	m *agentMetrics
}

func (e meteredImages) EnsureImage(ctx context.Context, ref string) (bool, error) {
	pulled, err := e.Engine.EnsureImage(ctx, ref)
	if err != nil && ctx.Err() == nil {
		e.m.pullErrors.Inc()
	}
	return pulled, err
}

// startAPI serves the local API until ctx ends. A listen failure is logged
// and the agent goes on without it: deploys matter more than metrics.
func startAPI(ctx context.Context, cfg *Config, eng *engine.Engine, src *gitsource.Source, m *agentMetrics, trigger func(), log hclog.Logger) {
	if cfg.API.Listen == "off" {
		return
	}
	l, err := api.Listen(cfg.API.Listen)
	if err != nil {
		log.Error("local API not started", "listen", cfg.API.Listen, "error", err)
		return
	}
	registerRuntimeMetrics(m.reg, src)
	s := &api.Server{
		Status:  func(ctx context.Context) (any, error) { return statusData(ctx, cfg, eng) },
		History: func(context.Context) (any, error) { return historyData(cfg, 50) },
		Jobs:    func(context.Context) (any, error) { return jobsData(cfg) },
		Metrics: m.reg,
		BeforeScrape: func() {
			m.fetches.Reset()
			m.fetches.Add(float64(src.Fetches()))
		},
		Trigger: trigger,
		Log:     log.Named("api"),
	}
	if f := cfg.API.WebhookSecretFile; f != "" {
		s.WebhookSecret = api.SecretFile(f)
	}
	log.Info("local API listening", "listen", l.Addr().String(), "webhook", s.WebhookSecret != nil)
	go func() {
		if err := s.Serve(ctx, l); err != nil {
			log.Error("local API", "error", err)
		}
	}()
}

// newNotifier builds the notifier from the config (nil without targets).
func newNotifier(cfg *Config, log hclog.Logger) *notify.Notifier {
	if len(cfg.Notify) == 0 {
		return nil
	}
	n := &notify.Notifier{Log: log.Named("notify"), RepeatAfter: cfg.NotifyRepeatAfter.Duration}
	for _, t := range cfg.Notify {
		target := notify.Target{Type: t.Type}
		if t.URLFile != "" {
			target.URL = notify.URLFromFile(t.URLFile)
		} else {
			u := t.URL
			target.URL = func() (string, error) { return u, nil }
		}
		if len(t.Events) > 0 {
			target.Events = map[string]bool{}
			for _, e := range t.Events {
				target.Events[e] = true
			}
		}
		n.Targets = append(n.Targets, target)
	}
	return n
}

// deployEvent is the notification for a deploy record: failed before
// anything changed (plan, prepare, cli) or rolled back after.
func deployEvent(env string, rec reconcile.Record) notify.Event {
	e := notify.Event{Env: env, Commit: rec.Commit, Subject: rec.Subject, DeployID: rec.ID, Status: rec.Result, Reason: rec.Reason, Key: "deploy:" + rec.Commit}
	switch {
	case rec.Result == reconcile.ResultSucceeded:
		e.Event = notify.DeploySucceeded
		e.Text = fmt.Sprintf("berth %s: deployed %.12s %q", env, rec.Commit, rec.Subject)
	case slices.Contains([]string{"workers", "servers", "retire"}, rec.Phase):
		e.Event = notify.DeployRolledBack
		e.Text = fmt.Sprintf("berth %s: deploy of %.12s %q failed in %s and was rolled back: %s", env, rec.Commit, rec.Subject, rec.Phase, rec.Reason)
	default:
		e.Event = notify.DeployFailed
		e.Text = fmt.Sprintf("berth %s: deploy of %.12s %q failed in %s, nothing changed: %s", env, rec.Commit, rec.Subject, rec.Phase, rec.Reason)
	}
	return e
}

// jobEvent tells of a finished run, per the job's notify setting.
func jobEvent(n *notify.Notifier, env string, r jobs.Run, spec envs.JobSpec) {
	key := "job:" + r.Job
	e := notify.Event{Env: env, Job: r.Job, Run: r.ID, Status: string(r.Status), ExitCode: r.ExitCode, Reason: r.Reason, Commit: r.Revision, Key: key}
	switch {
	case spec.Notify == "never" || r.Status == jobs.StatusSkipped || r.Status == jobs.StatusInterrupted:
		return
	case r.Status == jobs.StatusSucceeded:
		n.Forget(key) // the next failure is news again
		if spec.Notify != "always" {
			return
		}
		e.Event, e.Key = notify.JobSucceeded, ""
		e.Text = fmt.Sprintf("berth %s: job %s succeeded (run %s)", env, r.Job, r.ID)
	default:
		e.Event = notify.JobFailed
		e.Text = fmt.Sprintf("berth %s: job %s %s (run %s): %s", env, r.Job, r.Status, r.ID, r.Reason)
	}
	n.Send(e)
}
