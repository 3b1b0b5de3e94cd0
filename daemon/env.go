package daemon

import (
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/imagesig"
	"berth.dev/berth/jobs"
	"berth.dev/berth/migrate"
	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
	"berth.dev/berth/ui"
)

// envRuntime is one environment the agent runs: its Agent (state,
// journal, deployer), its own poller (its backoff after a failure is its
// own), its job scheduler, and what status and STATUS= show of it. A
// failure or an outage of one env never blocks or touches another: they
// share only the config repo (one listing per poll, reconcile.Shared), the
// Docker engine and the notifier.
type envRuntime struct {
	name   string
	dir    string // its state directory (package statedir)
	agent  *reconcile.Agent
	poller *gitsource.Poller
	// ready: no pass in flight and the last one did not fail (a failed
	// one backs off on its own timer): the env takes the next tick.
	ready atomic.Bool
	sched *jobs.Scheduler
	live  *status.Live
	// pub publishes this host's state of the env to the fleet (nil
	// without a fleet).
	pub *hostPublisher
	// services are the live revision's, for the status page.
	services atomic.Pointer[[]ui.ServiceSpec]
	log      hclog.Logger
}

// hostDeps is what every env's runtime is built from.
type hostDeps struct {
	cfg     *agentconfig.Config
	eng     *engine.Engine
	secrets reconcile.Secrets // nil without Vault
	// signatures checks images before they are pulled or run.
	signatures *imagesig.Verifier
	shared     *reconcile.Shared
	metrics    *agentMetrics
	notifier   *notify.Notifier
	wd         *watchdog
	// fleet is the agent's fleet client, nil without a fleet block.
	fleet *fleet.Client
	log   hclog.Logger
	// status is called whenever an env's STATUS= part changes.
	status func()
	// pages is told of each env's passes (pages.go).
	pages *startupPages
	// version is berth's, published to the fleet.
	version string
	// forge reports statuses and promotes (nil without a forge block).
	forge *forgeSide
	// observers are Daemon.Observers.
	observers []Observer
}

// newEnvRuntime wires one env: the place where per-env hooks go (a
// fleet's gate, its published status).
func newEnvRuntime(d hostDeps, name string) *envRuntime {
	cfg, m := d.cfg, d.metrics
	log := d.log.With("env", name)
	r := &envRuntime{name: name, dir: cfg.EnvDir(name), live: &status.Live{}, log: log}
	var sec reconcile.Secrets
	if d.secrets != nil {
		sec = meteredSecrets{Secrets: d.secrets, m: m, env: name, qualify: len(cfg.EnvNames()) > 1}
	}
	deployer := NewDeployer(cfg, name, d.eng, sec, log)
	deployer.Images = meteredImages{d.eng, m, name}
	deployer.Signatures = d.signatures
	if mr, ok := deployer.OneShots.(*migrate.Runner); ok && d.fleet != nil {
		mr.Fleet, mr.Env = d.fleet, name // migrations once per fleet
	}
	r.sched = &jobs.Scheduler{Env: name, Store: cfg.JobStore(name), Runner: d.eng, Reaper: d.eng, Secrets: sec, Signatures: d.signatures, Log: log.Named("jobs"),
		OnFinish: func(run jobs.Run, spec envs.JobSpec) {
			m.jobFinished(name, run, spec)
			if d.notifier != nil {
				jobEvent(d.notifier, name, run, spec)
			}
		}}
	view := d.shared.View(name, Loader(cfg, name, d.eng))
	r.agent = &reconcile.Agent{
		Env:             name,
		Pruner:          view.Pruner,
		KeepRevisions:   cfg.Deploy.KeepRevisions,
		Journal:         cfg.Journal(name),
		HoldUntilResume: cfg.RollbackHold == "resume",
		Source:          view.Source,
		Load:            view.Load,
		Deployer:        deployer,
		StateDir:        r.dir,
		Log:             log.Named("agent"),
		OnLive: func(env *envs.Env, commit string) {
			m.liveRevision(name, commit)
			r.liveServices(env)
			if err := r.sched.Update(env, commit); err != nil {
				log.Warn("jobs", "error", err)
			}
		},
	}
	obs := observers{d.wd, liveView{r.live, d.status}, passOnly(m.passEnded), notifications{d.notifier}, passOnly(d.pages.passEnded)}
	if d.fleet != nil {
		obs = append(obs, wireFleet(r, d, name))
	}
	if d.forge != nil {
		if o := d.forge.wire(r); o != nil {
			obs = append(obs, o)
		}
	}
	obs = append(obs, d.observers...)
	r.agent.OnProgress, r.agent.OnPass = obs.progress(name), obs.passEnded(name)
	r.poller = gitsource.NewPoller(cfg.Repo.PollInterval.Duration)
	r.poller.OnDemand = true
	r.ready.Store(true)
	return r
}

// recover marks the deploys a killed agent left as interrupted and tells
// shared what the env keeps. It says whether the env is settled: a live
// revision and no deploy to finish.
func (r *envRuntime) recover(shared *reconcile.Shared) (settled bool) {
	interrupted, err := r.agent.Journal.Recover()
	st, serr := reconcile.LoadState(r.dir)
	settled = err == nil && len(interrupted) == 0 && serr == nil && st.Live != nil
	if err != nil {
		// Not fatal: a full or read-only state dir is an outage the
		// passes report; the records stay "running" until a start can
		// mark them.
		r.log.Error("journal: interrupted deploys not marked", "error", err)
	}
	for _, rec := range interrupted {
		r.log.Warn("deploy was interrupted; converging from the containers", "deploy_id", rec.ID, "commit", rec.Commit, "phase", rec.Phase)
	}
	if commits, images, err := r.agent.Kept(); err != nil {
		r.log.Warn("state: what this env keeps could not be read; the other envs' prunes may remove its older working copies", "error", err)
	} else {
		shared.Keep(r.name, commits, images)
	}
	return settled
}
