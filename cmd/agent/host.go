package main

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/jobs"
	"berth.dev/berth/migrate"
	"berth.dev/berth/notify"
	"berth.dev/berth/reconcile"
)

// envRuntime is one environment the agent runs: its Agent (state,
// journal, deployer), its own poller (its backoff after a failure is its
// own), its job scheduler, and what status and STATUS= show of it. A
// failure or an outage of one env never blocks or touches another: they
// share only the config repo (one listing per poll, reconcile.Shared), the
// Docker engine and the notifier.
type envRuntime struct {
	name   string
	dir    string // its state directory (statedir.go)
	agent  *reconcile.Agent
	poller *gitsource.Poller
	// ready: no pass in flight and the last one did not fail (a failed
	// one backs off on its own timer): the env takes the next tick.
	ready atomic.Bool
	sched *jobs.Scheduler
	live  *liveStatus
	// pub publishes this host's state of the env to the fleet (nil
	// without a fleet).
	pub *hostPublisher
	log hclog.Logger
}

// hostDeps is what every env's runtime is built from.
type hostDeps struct {
	cfg      *Config
	eng      *engine.Engine
	secrets  reconcile.Secrets // nil without Vault
	shared   *reconcile.Shared
	metrics  *agentMetrics
	notifier *notify.Notifier
	wd       *watchdog
	// fleet is the agent's fleet client, nil without a fleet block.
	fleet *fleet.Client
	log   hclog.Logger
	// status is called whenever an env's STATUS= part changes.
	status func()
	// pages is told of each env's passes (pages.go).
	pages *startupPages
}

// newEnvRuntime wires one env: the place where per-env hooks go (a
// fleet's gate, its published status).
func newEnvRuntime(d hostDeps, name string) *envRuntime {
	cfg, m := d.cfg, d.metrics
	log := d.log.With("env", name)
	r := &envRuntime{name: name, dir: cfg.envDir(name), live: &liveStatus{}, log: log}
	var sec reconcile.Secrets
	if d.secrets != nil {
		sec = meteredSecrets{Secrets: d.secrets, m: m, env: name, qualify: len(cfg.EnvNames()) > 1}
	}
	deployer := newDeployer(cfg, name, d.eng, sec, log)
	deployer.Images = meteredImages{d.eng, m, name}
	if mr, ok := deployer.OneShots.(*migrate.Runner); ok && d.fleet != nil {
		mr.Fleet, mr.Env = d.fleet, name // migrations once per fleet
	}
	r.sched = &jobs.Scheduler{Env: name, Store: jobStore(cfg, name), Engine: d.eng, Secrets: sec, Log: log.Named("jobs"),
		OnFinish: func(run jobs.Run, spec envs.JobSpec) {
			m.jobFinished(name, run, spec)
			if d.notifier != nil {
				jobEvent(d.notifier, name, run, spec)
			}
		}}
	view := d.shared.View(name, loader(cfg, name, d.eng))
	r.agent = &reconcile.Agent{
		Env:             name,
		Pruner:          view.Pruner,
		KeepRevisions:   cfg.Deploy.KeepRevisions,
		Journal:         cfg.journalOf(name),
		HoldUntilResume: cfg.RollbackHold == "resume",
		Source:          view.Source,
		Load:            view.Load,
		Deployer:        deployer,
		StateDir:        r.dir,
		Log:             log.Named("agent"),
		OnLive: func(env *envs.Env, commit string) {
			m.liveRevision(name, commit)
			if err := r.sched.Update(env, commit); err != nil {
				log.Warn("jobs", "error", err)
			}
		},
		OnProgress: func(p reconcile.Progress) {
			d.wd.progress(name, p.Phase)
			if r.live.progress(p) {
				d.status()
			}
		},
		OnPass: func(p reconcile.Pass) {
			d.wd.passEnded(name)
			d.pages.passEnded(name)
			m.passEnded(name, p)
			if p.Notify {
				d.notifier.Send(passEvent(name, p))
			}
			if r.live.passEnded(p) {
				d.status()
			}
		},
	}
	if d.fleet != nil {
		wireFleet(r, d, name)
	}
	r.poller = gitsource.NewPoller(cfg.Repo.PollInterval.Duration)
	r.poller.OnDemand = true
	r.ready.Store(true)
	return r
}

// host runs the envs: one listing of the branch head per poll for all of
// them (the clock), then each env's pass in its own goroutine.
type host struct {
	envs   []*envRuntime
	shared *reconcile.Shared
	clock  *gitsource.Poller
	urgent atomic.Bool
}

// trigger asks every env to check now (a webhook, an operator's request):
// a backoff after a failure is cut short, as a single env's poller does.
func (h *host) trigger() {
	h.urgent.Store(true)
	h.clock.Trigger()
}

// round is one poll: list the head once, then start every env's pass (an
// env backing off after a failure goes on with its own backoff, unless
// the round was triggered). When no env would take the tick (each is in
// a pass or backing off), nothing is listed: each lists when its next
// pass starts.
func (h *host) round(ctx context.Context) error {
	urgent := h.urgent.Swap(false)
	var err error
	for _, e := range h.envs {
		if urgent || e.ready.Load() {
			err = h.shared.Poll(ctx)
			break
		}
	}
	for _, e := range h.envs {
		if urgent {
			e.poller.Trigger()
		} else {
			e.poller.Tick()
		}
	}
	return err
}

// run polls until ctx ends and waits for the passes in flight.
func (h *host) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, e := range h.envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.poller.Run(ctx, func(ctx context.Context) error {
				e.ready.Store(false)
				err := e.agent.Check(ctx)
				e.ready.Store(err == nil)
				return err
			})
		}()
	}
	h.clock.Run(ctx, h.round)
	wg.Wait()
}
