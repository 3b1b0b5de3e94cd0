package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// workers replaces workers, service by service: start the new set
// (every replica), wait until all are healthy, stop the old ones (stop the
// old first for stop_first). Old containers are only stopped here and
// removed at retire, so a later failure can start them again.
func (p *deploy) workers(ctx context.Context) error {
	// The servers' containers are created meanwhile.
	p.createAhead(ctx, p.actions(envs.RoleServer), true)
	for _, a := range p.actions(envs.RoleWorker) {
		svc := p.in.Env.Service(a.Service)
		if svc.Berth.StopFirst {
			if err := p.stopOld(ctx, a); err != nil {
				return err
			}
		}
		set, err := p.created(ctx, a, false)
		if err != nil {
			return err
		}
		if err := p.launch(ctx, set); err != nil {
			return err
		}
		if !svc.Berth.StopFirst {
			// The old workers stop while the deploy goes on (the new ones
			// run beside them anyway); the servers phase waits for them.
			p.stopOldLater(ctx, a)
		}
	}
	return nil
}

// actions are the plan's creations and replacements of role.
func (p *deploy) actions(role envs.Role) []Action {
	var out []Action
	for _, a := range p.res.Actions {
		if a.Role == role && (a.Kind == Create || a.Kind == Replace) {
			out = append(out, a)
		}
	}
	return out
}

func (p *deploy) stopOld(ctx context.Context, a Action) error {
	for _, old := range a.Current {
		if err := p.Containers.Stop(ctx, old.ID, nil); err != nil {
			return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
		}
		p.addUndo("start "+old.Name, func(ctx context.Context) error { return p.Containers.Start(ctx, old.ID) })
		p.done("stop " + old.Name)
		p.remove = append(p.remove, old)
	}
	return nil
}

// stopOldLater stops a's old containers in the background: the stops are
// waited for before the servers phase ends (stopped), and a rollback
// starts each again once its stop is done.
func (p *deploy) stopOldLater(ctx context.Context, a Action) {
	log := p.log
	for _, old := range a.Current {
		done := make(chan error, 1)
		wait := sync.OnceValue(func() error { return <-done })
		p.stops = append(p.stops, func() error {
			if err := wait(); err != nil {
				return asOutage(fmt.Errorf("service %s: stop %s: %w", a.Service, old.Name, err))
			}
			return nil
		})
		go func() {
			err := safely(log, "workers", func() error { return p.Containers.Stop(ctx, old.ID, nil) })
			if err == nil {
				p.done("stop " + old.Name)
			}
			done <- err
		}()
		p.addUndo("start "+old.Name, func(ctx context.Context) error {
			wait() // whether it stopped or not, it runs again
			return p.Containers.Start(ctx, old.ID)
		})
		p.remove = append(p.remove, old)
	}
}

// stopped waits for the old workers' stops begun in the workers phase.
func (p *deploy) stopped() error {
	var errs []error
	for _, wait := range p.stops {
		errs = append(errs, wait())
	}
	p.stops = nil
	return firstError(errs)
}

// cut is one server's switch: its new set, its balancer, and the servers
// it switched away from (running until retire, or a switch back).
type cut struct {
	a        Action
	set      *newSet
	sw       Switcher
	old      []string // the old servers' backends
	switched time.Time
	watch    time.Duration
	before   *answerStats // the old servers' answers before the switch (HAProxy)
}

// servers starts every new server set beside the old ones and waits until
// all of them passed their health gates; then it switches the balancers,
// one server after the other. The old servers are not touched until every
// new one passed its gate; a switch that fails puts back the switches
// before it (rollback, in reverse), so the host stays on one revision.
func (p *deploy) servers(ctx context.Context) error {
	var cuts []*cut
	for _, a := range p.res.Actions {
		if a.Role != envs.RoleServer {
			continue
		}
		if a.Kind == Keep {
			// An agent killed between the new servers' health gate and the
			// switch (or during the watch) left the balancer on the old
			// ones; a scale-down keeps fewer: point it at the servers
			// being kept (a no-op when it already is).
			if err := p.ensureBalancer(ctx, a); err != nil {
				return err
			}
			continue
		}
		if a.Kind != Create && a.Kind != Replace {
			continue
		}
		if len(a.Current) > 0 && switchedAway(a) {
			// An interrupted deploy switched to containers that have
			// failed since (killed in its watch, say): the old ones take
			// the traffic back before anything new starts.
			if err := p.ensureBalancer(ctx, a); err != nil {
				return err
			}
		}
		set, err := p.created(ctx, a, true)
		if err != nil {
			return err
		}
		cuts = append(cuts, &cut{a: a, set: set, watch: p.in.Env.Service(a.Service).Berth.Watch})
	}
	// Every new server set starts and is gated at once.
	errs := make([]error, len(cuts))
	var wg sync.WaitGroup
	for i, c := range cuts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = safely(p.log, "servers", func() error { return p.launch(ctx, c.set) })
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return err
	}
	for _, c := range cuts {
		if err := p.switchTo(ctx, c); err != nil {
			return err
		}
		p.cuts = append(p.cuts, c)
	}
	if err := p.stopped(); err != nil {
		return err
	}
	if !p.nothingToWatch() {
		p.res.WatchUntil = p.watchUntil() // journaled before the watch begins
	}
	return nil
}

// switchedAway says whether a's balancer may point at containers other
// than its Current: containers of the desired config that ran and have
// failed since, turned unhealthy or exited (an interrupted deploy may have
// switched to them).
func switchedAway(a Action) bool {
	return slices.ContainsFunc(a.Stale, func(m engine.Managed) bool {
		return m.ConfigHash == a.Hash && m.State != "created" && (m.State != "running" || m.Health == "unhealthy")
	})
}

// switchTo points c's balancer at its new servers. A balancer that can keep
// the old servers in standby (HAProxy: in maintenance) does so, so a switch
// back is instant; the undo step switches back.
func (p *deploy) switchTo(ctx context.Context, c *cut) error {
	a := c.a
	sw, err := p.balancer(a)
	if err != nil {
		return err
	}
	c.sw = sw
	port := strconv.Itoa(p.in.Env.Service(a.Service).Berth.Port) + "/tcp"
	if c.old, err = p.hostPorts(ctx, a.Current, port); err != nil {
		return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
	}
	if len(c.old) == 0 {
		c.watch = 0 // nothing to switch back to: a first deploy is not watched
	}
	if c.watch > 0 {
		c.before = p.answers(ctx, sw, c.old)
	}
	next := c.set.backends()
	start := time.Now()
	if sb, ok := sw.(Standby); ok {
		err = sb.SwitchStandby(ctx, next)
	} else {
		err = sw.Switch(ctx, next)
	}
	if err != nil {
		// lb marks a configuration the balancer rejects, or a backend
		// berth does not own, as a verdict; the rest (nginx or HAProxy
		// down, no answer) is an outage.
		return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
	}
	c.switched = time.Now()
	p.done(fmt.Sprintf("switch %s to %s", a.Service, strings.Join(next, ",")))
	if len(c.old) > 0 {
		old := c.old
		p.addUndo(fmt.Sprintf("switch %s back to %s", a.Service, strings.Join(old, ",")), func(ctx context.Context) error { return sw.Switch(ctx, old) })
	}
	p.log.Info("load balancer switched", "service", a.Service, "backend", strings.Join(next, ","), "took", time.Since(start).Round(time.Millisecond))
	p.remove = append(p.remove, a.Current...)
	return nil
}

// gateWithoutHealthcheck is the health gate of a server whose image has no
// HEALTHCHECK: berth warns and waits until an HTTP GET of / on its port gets
// an answer below 500. (A TCP connect proves nothing: Docker's proxy accepts
// on the published port whether or not the app listens.)
func (p *deploy) gateWithoutHealthcheck(ctx context.Context, a Action, id, hostPort string) error {
	has, err := p.Observer.HasHealthcheck(ctx, id)
	if err != nil || has {
		return asOutage(err)
	}
	p.log.Warn("server has no HEALTHCHECK; gating on an HTTP answer from its port instead", "service", a.Service)
	timeout := p.HealthTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	url := "http://127.0.0.1:" + hostPort + "/"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			// The app's own port not answering is the revision's fault,
			// however the transport error reads.
			return failure.AsVerdict(fmt.Errorf("service %s: no HEALTHCHECK, and %s did not answer within %s: %w", a.Service, url, timeout, err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// balancer is the switcher of a's server, one per server for the whole
// deploy (a switch, its undo and the retire use the same one).
func (p *deploy) balancer(a Action) (Switcher, error) {
	if sw, ok := p.switchers[a.Service]; ok {
		return sw, nil
	}
	var sw Switcher
	if p.Switcher != nil {
		// The Switcher is asked with the env whose LB is the server's.
		env := *p.in.Env
		if svc := p.in.Env.Service(a.Service); svc != nil && svc.Berth.LB != nil {
			env.LB = svc.Berth.LB
		}
		if env.LB != nil {
			sw = p.Switcher(&env)
		}
	}
	if sw == nil {
		return nil, failure.AsVerdict(fmt.Errorf("service %s: no load balancer configured", a.Service))
	}
	p.switchers[a.Service] = sw
	return sw, nil
}

func (p *deploy) ensureBalancer(ctx context.Context, a Action) error {
	port := strconv.Itoa(p.in.Env.Service(a.Service).Berth.Port) + "/tcp"
	backends, err := p.hostPorts(ctx, a.Current, port)
	if err != nil {
		return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
	}
	sw, err := p.balancer(a)
	if err != nil {
		return err
	}
	if err := sw.Switch(ctx, backends); err != nil {
		return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
	}
	return nil
}

// retire stops and removes what the new revision replaced: old servers
// (the balancer no longer sends them anything), old workers, stale
// containers and services gone from the config.
func (p *deploy) retire(ctx context.Context) error {
	for _, a := range p.res.Actions {
		p.remove = append(p.remove, a.Stale...)
		if a.Kind == Remove {
			p.remove = append(p.remove, a.Current...)
		}
	}
	// From here on the revision is live: failures to clean up are logged,
	// not rolled back.
	p.undo = nil
	// Old servers a balancer kept in standby leave it first.
	for _, c := range p.cuts {
		if sb, ok := c.sw.(Standby); ok {
			if err := sb.Retire(ctx); err != nil {
				p.log.Warn("retire the old servers from the balancer; the next pass removes them", "service", c.a.Service, "error", err)
			}
		}
	}
	// In parallel: each is already out of service, and a graceful stop
	// takes as long as the slowest app's shutdown, not their sum.
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, m := range p.remove {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := safely(p.log, "retire", func() error {
				// A stop that missed its deadline (a loaded engine slow to
				// report the exit) still ends in the forced removal, which
				// kills what is left.
				if err := p.Containers.Stop(ctx, m.ID, nil); err != nil {
					p.log.Warn("graceful stop incomplete; removing the container", "service", m.Service, "container", m.Name, "error", err)
				}
				return p.Containers.Remove(ctx, m.ID)
			})
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			p.done("remove " + m.Name)
			p.log.Info("container retired", "service", m.Service, "container", m.Name)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		p.log.Warn("retire incomplete; the next pass removes the rest", "error", err)
	}
	return nil
}
