package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/engine"
	"berth.dev/berth/fleet"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/statedir"
)

// Daemon is the agent of one host: every env of Config, reconciled until
// the context ends.
type Daemon struct {
	Config *agentconfig.Config
	Log    hclog.Logger
	// Version and Commit are berth's own, for berth_build_info and the
	// fleet's host records.
	Version, Commit string
	// Observers follow every env's passes beside the daemon's own (a
	// forge reporter, a status page): see Observer.
	Observers []Observer
}

// ErrConfig marks a start that failed on the agent config (a setting
// only checked when its client is made: the repo URL, Vault, the fleet).
var ErrConfig = errors.New("agent config")

// running is a started daemon: what Run and Once share.
type running struct {
	cfg    *agentconfig.Config
	log    hclog.Logger
	h      *host
	eng    *engine.Engine
	src    *gitsource.Source
	m      *agentMetrics
	fc     *fleet.Client
	wd     *watchdog
	stops  []func() // run in reverse by close
	phased bool     // every env serves a live revision with no deploy to finish
}

func (r *running) close() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
}

// start takes the state dir, makes the clients and every env's runtime,
// and marks the deploys a killed agent left as interrupted.
func (d *Daemon) start(ctx context.Context) (_ *running, err error) {
	cfg, log := d.Config, d.Log
	r := &running{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	unlock, pidErr, err := statedir.Lock(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	r.stops = append(r.stops, unlock)
	if pidErr != nil {
		// A full state dir must not keep the agent from starting (it
		// reports the outage and goes on once there is space); only the
		// CLI's signal is lost: requests wait for the next poll.
		log.Error("the agent's pid could not be recorded: berth rollback, retry, resume and jobs run take effect at the next poll instead of at once", "error", pidErr)
	}
	if err := statedir.Adopt(cfg.StateDir, cfg.EnvNames(), log); err != nil {
		return nil, fmt.Errorf("state dir: the single-env state could not be moved into its env's directory: %w", err)
	}
	dc, err := NewDocker(cfg)
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, func() { dc.Close() })
	if r.src, err = NewSource(cfg, filepath.Join(cfg.StateDir, "git"), log); err != nil {
		return nil, fmt.Errorf("%w: config repo: %w", ErrConfig, err)
	}
	r.eng = engine.New(dc, log)
	sec, renewLeases, err := NewSecrets(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("%w: vault: %w", ErrConfig, err)
	}
	ver, err := NewVerifier(cfg, log)
	if err != nil {
		return nil, fmt.Errorf("%w: images.verify: %w", ErrConfig, err)
	}
	r.m = newAgentMetrics(d.Version, d.Commit)
	r.background(ctx, renewLeases)
	notifier := newNotifier(cfg, log)
	if notifier != nil {
		r.background(ctx, notifier.Run) // delivers what is queued before close returns
	}
	if r.fc, err = newFleet(cfg, log); err != nil {
		return nil, fmt.Errorf("%w: fleet: %w", ErrConfig, err)
	}
	if r.fc != nil {
		r.stops = append(r.stops, func() { r.fc.Close() })
		r.background(ctx, r.fc.Run)
		log.Info("fleet: coordinating through etcd", "host", r.fc.Host(), "endpoints", strings.Join(cfg.Fleet.Etcd.Endpoints, ","), "prefix", cfg.Fleet.Prefix)
	}
	fs, err := newForge(cfg, r.src, r.fc, d.Version, log)
	if err != nil {
		return nil, fmt.Errorf("%w: forge: %w", ErrConfig, err)
	}
	if fs != nil {
		r.background(ctx, func(ctx context.Context) { fs.run(ctx, cfg.EnvNames()) })
	}
	shared := &reconcile.Shared{Source: meteredSource{Source{r.src}, r.m}, Pruner: r.eng}
	r.h = &host{shared: shared, clock: gitsource.NewPoller(cfg.Repo.PollInterval.Duration)}
	r.wd = newWatchdog(cfg.StallAfter(), log)
	deps := hostDeps{cfg: cfg, eng: r.eng, secrets: sec, signatures: ver, shared: shared, metrics: r.m, notifier: notifier, wd: r.wd, fleet: r.fc, log: log,
		status: func() { sdNotify("STATUS=" + statusLine(cfg, r.h.envs)) }, pages: newStartupPages(cfg.EnvNames()), version: d.Version, forge: fs, observers: d.Observers}
	r.phased = r.fc != nil
	for _, name := range cfg.EnvNames() {
		e := newEnvRuntime(deps, name)
		r.h.envs = append(r.h.envs, e)
		if !e.recover(shared) {
			r.phased = false
		}
	}
	log.Info("berth started", "version", d.Version, "repo", r.src.URL(), "branch", cfg.Repo.Branch, "state_dir", cfg.StateDir, "envs", strings.Join(cfg.EnvNames(), ","))
	return r, nil
}

// background runs f until close, which ends its context and waits for it.
func (r *running) background(ctx context.Context, f func(context.Context)) {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	r.stops = append(r.stops, func() { stop(); <-done })
}
