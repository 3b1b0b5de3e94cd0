package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/api"
	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/internal/failure"
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
	live, fleet                  *metrics.Family
	jobRuns, jobSeconds, jobLast *metrics.Family
}

func newAgentMetrics() *agentMetrics {
	r := &metrics.Registry{}
	m := &agentMetrics{
		reg:          r,
		polls:        r.Counter("berth_git_polls_total", "Branch head listings (one per check)."),
		fetches:      r.Counter("berth_git_fetches_total", "Fetches from the config repo (only when the head moved)."),
		gitErrors:    r.Counter("berth_git_errors_total", "Config repo errors, by operation.", "op"),
		pullErrors:   r.Counter("berth_image_pull_errors_total", "Image pulls that failed (registry unreachable, auth, missing digest), by env.", "env"),
		secretErrors: r.Counter("berth_secret_resolution_errors_total", "Secret resolutions from Vault that failed, by env and service.", "env", "service"),
		checks:       r.Counter("berth_checks_total", "Passes (checks of the config repo and the host), by env and how they ended: ok, verdict, outage, interrupted.", "env", "result"),
		deploys:      r.Counter("berth_deploys_total", "Deploys that changed something, by env and result.", "env", "result"),
		rollbacks:    r.Counter("berth_rollbacks_total", "Deploys that undid something they had changed, by env.", "env"),
		phases:       r.Summary("berth_deploy_phase_seconds", "Time spent in each deploy phase, by env.", "env", "phase"),
		live:         r.Gauge("berth_live_revision_info", "The live revision (value 1).", "env", "commit"),
		fleet:        r.Gauge("berth_fleet_hosts", "Alive hosts of the fleet by env and live revision (with a fleet; read from etcd at most every 10 s).", "env", "revision"),
		jobRuns:      r.Counter("berth_job_runs_total", "Job runs by env, job and status.", "env", "job", "status"),
		jobSeconds:   r.Summary("berth_job_run_seconds", "Job run durations.", "env", "job"),
		jobLast:      r.Gauge("berth_job_last_success_timestamp_seconds", "When each job last succeeded (Unix time).", "env", "job"),
	}
	r.Gauge("berth_build_info", "berth's version (value 1).", "version", "commit").Set(1, version, commit)
	return m
}

// passEnded counts one pass: one increment of berth_checks_total by how
// it ended, and for a deploy that changed something its result, whether it
// rolled anything back, and its phase durations.
func (m *agentMetrics) passEnded(env string, p reconcile.Pass) {
	m.checks.Inc(env, checkResult(p))
	if !p.New || !p.Record.Changed {
		return // a pass counted into the previous record changed nothing
	}
	rec := p.Record
	m.deploys.Inc(env, rec.Result)
	if len(rec.Undone) > 0 {
		m.rollbacks.Inc(env)
	}
	for _, p := range rec.Phases {
		m.phases.Observe(p.Duration.Seconds(), env, p.Name)
	}
}

// checkResult is the berth_checks_total label of a pass: ok, verdict,
// outage or interrupted.
func checkResult(p reconcile.Pass) string {
	switch p.Result {
	case reconcile.ResultSucceeded, reconcile.ResultUnchanged:
		return "ok"
	case reconcile.ResultFailed:
		return "verdict"
	case reconcile.ResultOutage:
		return "outage"
	}
	return "interrupted"
}

func (m *agentMetrics) liveRevision(env, commit string) {
	m.live.ResetWhere(env)
	m.live.Set(1, env, commit)
}

// fleetHosts sets berth_fleet_hosts from the fleet cache; an unreachable
// etcd keeps the last values.
func (m *agentMetrics) fleetHosts(f *fleetCache) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	data, err := f.get(ctx)
	if err != nil {
		return
	}
	m.fleet.Reset()
	for k, n := range hostsByRevision(data) {
		m.fleet.Set(float64(n), k[0], k[1])
	}
}

// apiFleet is /api/fleet: every host of each env (or of ?env=NAME), with
// the fleet-wide pause, rollback, halts and migrations, read from etcd at
// most every 10 s.
func apiFleet(ctx context.Context, cfg *Config, f *fleetCache) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	data, err := f.get(ctx)
	if err != nil {
		return nil, err
	}
	var out []fleetEnvJSON
	for _, e := range data {
		if slices.Contains(names, e.Env) {
			out = append(out, e)
		}
	}
	return map[string]any{"envs": out}, nil
}

func (m *agentMetrics) jobFinished(env string, r jobs.Run, _ envs.JobSpec) {
	m.jobRuns.Inc(env, r.Job, string(r.Status))
	if r.Status == jobs.StatusSkipped {
		return
	}
	m.jobSeconds.Observe(float64(r.DurationMS)/1000, env, r.Job)
	if r.Status == jobs.StatusSucceeded {
		m.jobLast.Set(float64(r.Finished.Unix()), env, r.Job)
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
	if err != nil && ctx.Err() == nil && !failure.IsVerdict(err) { // a refused commit is no Git error
		s.m.gitErrors.Inc("fetch")
	}
	return rev, err
}

// meteredSecrets counts failed resolutions (never a value: the error is
// not even looked at). With several envs, the service name the resolver
// sees is ENV/SERVICE: two envs' services of one name keep their leases
// and cached values apart.
type meteredSecrets struct {
	reconcile.Secrets
	m       *agentMetrics
	env     string
	qualify bool
}

func (s meteredSecrets) Resolve(ctx context.Context, service string, refs map[string]envs.SecretRef) ([]string, string, error) {
	name := service
	if s.qualify {
		name = s.env + "/" + service
	}
	env, digest, err := s.Secrets.Resolve(ctx, name, refs)
	if err != nil && ctx.Err() == nil {
		s.m.secretErrors.Inc(s.env, service)
	}
	return env, digest, err
}

// meteredImages counts failed pulls.
type meteredImages struct {
	*engine.Engine
	m   *agentMetrics
	env string
}

func (e meteredImages) EnsureImage(ctx context.Context, ref string) (bool, error) {
	pulled, err := e.Engine.EnsureImage(ctx, ref)
	if err != nil && ctx.Err() == nil {
		e.m.pullErrors.Inc(e.env)
	}
	return pulled, err
}

// startAPI serves the local API until ctx ends. A listen failure is logged
// and the agent goes on without it: deploys matter more than metrics.
func startAPI(ctx context.Context, cfg *Config, eng *engine.Engine, src *gitsource.Source, m *agentMetrics, rs []*envRuntime, fc *fleet.Client, trigger func(), log hclog.Logger) {
	if cfg.API.Listen == "off" {
		return
	}
	l, err := api.Listen(cfg.API.Listen)
	if err != nil {
		log.Error("local API not started", "listen", cfg.API.Listen, "error", err)
		return
	}
	registerRuntimeMetrics(m.reg, src)
	var fcache *fleetCache
	if fc != nil {
		fcache = &fleetCache{c: fc, names: cfg.EnvNames()}
	}
	s := &api.Server{
		Status:  func(ctx context.Context) (any, error) { return apiStatus(ctx, cfg, eng, rs) },
		History: func(ctx context.Context) (any, error) { return apiHistory(ctx, cfg) },
		Jobs:    func(ctx context.Context) (any, error) { return apiJobs(ctx, cfg) },
		Metrics: m.reg,
		BeforeScrape: func() {
			m.fetches.Reset()
			m.fetches.Add(float64(src.Fetches()))
			if fcache != nil {
				m.fleetHosts(fcache)
			}
		},
		Trigger: trigger,
		Log:     log.Named("api"),
	}
	if fcache != nil {
		s.Fleet = func(ctx context.Context) (any, error) { return apiFleet(ctx, cfg, fcache) }
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

// apiEnvs is the env of ?env=NAME, or every env.
func apiEnvs(ctx context.Context, cfg *Config) ([]string, error) {
	names, err := selectEnvs(cfg, api.Query(ctx).Get("env"))
	if err != nil {
		return nil, api.BadRequest{Err: err}
	}
	return names, nil
}

// apiStatus is /api/status: the env's status when the agent runs one (or
// ?env=NAME names one), else {"envs": [...]}, each with the running
// agent's view.
func apiStatus(ctx context.Context, cfg *Config, eng *engine.Engine, rs []*envRuntime) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var outs []*statusJSON
	for _, name := range names {
		var live *liveStatus
		for _, r := range rs {
			if r.name == name {
				live = r.live
			}
		}
		out, err := statusData(ctx, cfg, name, eng, live)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", name, err)
		}
		outs = append(outs, out)
	}
	if len(outs) == 1 {
		return outs[0], nil
	}
	return statusAllJSON{Envs: outs}, nil
}

// apiHistory is /api/history: the newest 50 records of every env (or of
// ?env=NAME), newest first.
func apiHistory(ctx context.Context, cfg *Config) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return historyData(cfg, names, 50)
}

// apiJobs is /api/jobs: the jobs of every env (or of ?env=NAME).
func apiJobs(ctx context.Context, cfg *Config) (any, error) {
	names, err := apiEnvs(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return jobsData(cfg, names)
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

// passEvent renders a pass worth a notification (reconcile decides which
// are: a deploy that changed something, a verdict, an outage that lasted).
func passEvent(env string, p reconcile.Pass) notify.Event {
	rec := p.Record
	e := notify.Event{Env: env, Commit: rec.Commit, Subject: rec.Subject, DeployID: rec.ID, Status: rec.Result, Reason: rec.Reason, Key: "deploy:" + rec.Commit}
	what := fmt.Sprintf("%.12s %q", rec.Commit, rec.Subject)
	switch {
	case rec.Result == reconcile.ResultSucceeded:
		e.Event = notify.DeploySucceeded
		e.Text = fmt.Sprintf("berth %s: deployed %s", env, what)
	case rec.Result == reconcile.ResultOutage:
		e.Event, e.Key = notify.DeployOutage, "outage:"+rec.Commit+":"+rec.Phase
		if rec.Commit == "" {
			what = "the branch head"
		}
		e.Text = fmt.Sprintf("berth %s: %s waits for an outage (%d passes in %s); the host keeps %s and retries by itself: %s",
			env, what, rec.Count(), rec.Phase, orNone(rec.Live), rec.Reason)
	case len(rec.Undone) > 0:
		e.Event = notify.DeployRolledBack
		e.Text = fmt.Sprintf("berth %s: deploy of %s failed in %s and was rolled back (undone: %s%s): %s",
			env, what, rec.Phase, strings.Join(rec.Undone, ", "), kept(rec), rec.Reason)
	case len(rec.Done) > 0:
		// Changes nothing undoes: a migration that ran before a cli
		// one-shot failed.
		e.Event = notify.DeployFailed
		e.Text = fmt.Sprintf("berth %s: deploy of %s failed in %s after changes that are not undone (%s): %s",
			env, what, rec.Phase, strings.Join(rec.Done, ", "), rec.Reason)
	default:
		e.Event = notify.DeployFailed
		e.Text = fmt.Sprintf("berth %s: deploy of %s failed in %s, nothing changed: %s", env, what, rec.Phase, rec.Reason)
	}
	return e
}

// kept names the one-shots a rollback does not undo.
func kept(rec reconcile.Record) string {
	var runs []string
	for _, d := range rec.Done {
		if strings.HasPrefix(d, "run ") {
			runs = append(runs, d)
		}
	}
	if len(runs) == 0 {
		return ""
	}
	return "; not undone: " + strings.Join(runs, ", ")
}

func orNone(commit string) string {
	if commit == "" {
		return "no live revision"
	}
	return fmt.Sprintf("%.12s", commit)
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
