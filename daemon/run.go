package daemon

import (
	"context"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// Run reconciles every env until ctx ends (SIGTERM): an in-flight deploy
// finishes or rolls back, running jobs are waited for. Errors are of the
// start (ErrConfig marks the config's); once running, every pass reports
// itself (journal, metrics, notification, STATUS=).
func (d *Daemon) Run(ctx context.Context) error {
	r, err := d.start(ctx)
	if err != nil {
		return err
	}
	defer r.close()
	if r.phased {
		// A fleet restarted at once (an upgrade, a replaced autoscaling
		// group) must not poll the Git server in lockstep: a host already
		// serving a live revision in every env, with no deploy to finish,
		// polls first at a random point of its first interval (a webhook
		// still polls at once). docs/fleet.md, "Polling the config repo".
		r.h.clock.Phase = r.cfg.Repo.PollInterval.Duration
	}
	// Jobs follow the live revision, from its local working copy (so cron
	// survives a Git outage); the scheduler first reaps runs a killed agent
	// left.
	var schedWG sync.WaitGroup
	for _, e := range r.h.envs {
		if err := e.agent.LoadLive(ctx); err != nil {
			e.log.Warn("jobs: load the live revision", "error", err)
		}
		schedWG.Add(1)
		go func() { defer schedWG.Done(); e.sched.Run(ctx) }()
	}
	r.takeRequests(ctx)
	if r.fc != nil {
		watchFleetControl(ctx, r.fc, r.h.envs, r.h.trigger)
	}
	startAPI(ctx, r.cfg, r.eng, r.src, r.m, r.h.envs, r.fc, r.h.trigger, r.log)
	go r.wd.run(ctx, watchdogInterval(), sdNotify)
	sdNotify("READY=1\nSTATUS=" + statusLine(r.cfg, r.h.envs))
	r.h.run(ctx)
	sdNotify("STOPPING=1\nSTATUS=stopping: waiting for the deploy and job runs in flight")
	schedWG.Wait()
	r.log.Info("berth stopped")
	return nil
}

// takeRequests hands the operators' requests (berth jobs run, rollback,
// retry, resume: SIGUSR1) to the envs now instead of at the next poll,
// and the ones left while the agent was down.
func (r *running) takeRequests(ctx context.Context) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(usr1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				for _, e := range r.h.envs {
					e.sched.TakeRequests()
				}
				r.h.trigger()
			}
		}
	}()
	for _, e := range r.h.envs {
		e.sched.TakeRequests()
	}
}

// Once is one pass of each env, one after the other, on one listing of
// the branch head (`berth run --once`). It returns how each pass ended,
// in config order; err is a start that failed.
func (d *Daemon) Once(ctx context.Context) ([]reconcile.Pass, error) {
	r, err := d.start(ctx)
	if err != nil {
		return nil, err
	}
	defer r.close()
	_ = r.h.shared.Poll(ctx)
	var out []reconcile.Pass
	for _, e := range r.h.envs {
		var got *reconcile.Pass
		onPass := e.agent.OnPass
		e.agent.OnPass = func(p reconcile.Pass) {
			got = &p
			if onPass != nil {
				onPass(p)
			}
		}
		_ = e.agent.Check(ctx) // the pass logged its outcome once
		if got != nil {
			out = append(out, *got)
		}
	}
	return out, nil
}

// statusLine is the unit's STATUS=: each env's line, in config order.
func statusLine(cfg *agentconfig.Config, rs []*envRuntime) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, status.Line(cfg, r.name, r.live))
	}
	return strings.Join(parts, " | ")
}
