package daemon

import (
	"context"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/metrics"
	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
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
	live, fleet, skew            *metrics.Family
	jobRuns, jobSeconds, jobLast *metrics.Family
}

func newAgentMetrics(version, commit string) *agentMetrics {
	r := &metrics.Registry{}
	m := &agentMetrics{
		reg:          r,
		polls:        r.Counter("berth_git_polls_total", "Branch head listings (one per check)."),
		fetches:      r.Counter("berth_git_fetches_total", "Fetches from the config repo (only when the head moved)."),
		gitErrors:    r.Counter("berth_git_errors_total", "Config repo errors, by operation.", "op"),
		pullErrors:   r.Counter("berth_image_pull_errors_total", "Image pulls that failed (registry unreachable, auth, missing digest), by env.", "env"),
		secretErrors: r.Counter("berth_secret_resolution_errors_total", "Secret resolutions from Vault that failed, by env and service.", "env", "service"),
		checks:       r.Counter("berth_checks_total", "Passes (checks of the config repo and the host), by env and how they ended: ok, verdict, outage, held, interrupted.", "env", "result"),
		deploys:      r.Counter("berth_deploys_total", "Deploys that changed something, by env and result.", "env", "result"),
		rollbacks:    r.Counter("berth_rollbacks_total", "Deploys that undid something they had changed, by env.", "env"),
		phases:       r.Summary("berth_deploy_phase_seconds", "Time spent in each deploy phase, by env.", "env", "phase"),
		live:         r.Gauge("berth_live_revision_info", "The live revision (value 1).", "env", "commit"),
		fleet:        r.Gauge("berth_fleet_hosts", "Alive hosts of the fleet by env and live revision (with a fleet; read from etcd at most every 10 s).", "env", "revision"),
		skew:         r.Gauge("berth_fleet_clock_skew_seconds", "This host's clock minus etcd's, to about a second (with a fleet, once measured); 5 s or more off, its job claims ahead of etcd's clock are refused."),
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
	m.checks.Inc(env, p.Result.Label())
	if !p.New || !p.Record.Changed {
		return // a pass counted into the previous record changed nothing
	}
	rec := p.Record
	m.deploys.Inc(env, string(rec.Result))
	if len(rec.Undone) > 0 {
		m.rollbacks.Inc(env)
	}
	for _, p := range rec.Phases {
		m.phases.Observe(p.Duration.Seconds(), env, string(p.Name))
	}
}

func (m *agentMetrics) liveRevision(env, commit string) {
	m.live.ResetWhere(env)
	m.live.Set(1, env, commit)
}

// fleetHosts sets berth_fleet_hosts from the fleet cache; an unreachable
// etcd keeps the last values.
func (m *agentMetrics) fleetHosts(f *status.FleetCache) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	data, err := f.Get(ctx)
	if err != nil {
		return
	}
	m.fleet.Reset()
	for k, n := range status.HostsByRevision(data) {
		m.fleet.Set(float64(n), k[0], k[1])
	}
}

// clockSkew sets berth_fleet_clock_skew_seconds from the fleet client's
// estimate of etcd's clock (no network).
func (m *agentMetrics) clockSkew(c interface{ ClockSkew() (time.Duration, bool) }) {
	if skew, ok := c.ClockSkew(); ok {
		m.skew.Set(skew.Seconds())
	}
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
