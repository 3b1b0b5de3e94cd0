package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// workers replaces workers one by one: start new, wait healthy, stop old
// (stop old first for stop_first). Old containers are only stopped here and
// removed at retire, so a later failure can start them again.
func (p *deploy) workers(ctx context.Context) error {
	for _, a := range p.res.Actions {
		if a.Role != envs.RoleWorker || (a.Kind != Create && a.Kind != Replace) {
			continue
		}
		svc := p.in.Env.Service(a.Service)
		if svc.Berth.StopFirst && a.Current != nil {
			if err := p.stopOld(ctx, a); err != nil {
				return err
			}
		}
		if _, err := p.start(ctx, a, false); err != nil {
			return err
		}
		if !svc.Berth.StopFirst && a.Current != nil {
			if err := p.stopOld(ctx, a); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *deploy) stopOld(ctx context.Context, a Action) error {
	old := *a.Current
	if err := p.Containers.Stop(ctx, old.ID, nil); err != nil {
		return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
	}
	p.undo = append(p.undo, undoStep{"start " + old.Name, func(ctx context.Context) error { return p.Containers.Start(ctx, old.ID) }})
	p.done("stop " + old.Name)
	p.remove = append(p.remove, old)
	return nil
}

// servers starts each new server beside the old one, waits for its health
// gate, then switches the load balancer. The old server is not touched
// until the new one passed its gate and the switch is done.
func (p *deploy) servers(ctx context.Context) error {
	for _, a := range p.res.Actions {
		if a.Role != envs.RoleServer {
			continue
		}
		port := strconv.Itoa(p.in.Env.Service(a.Service).Berth.Port) + "/tcp"
		if a.Kind == Keep {
			// An agent killed between a new server's health gate and the
			// switch left the balancer on the old one: point it at the
			// server being kept (a no-op when it already is).
			if err := p.ensureBalancer(ctx, a, port); err != nil {
				return err
			}
			continue
		}
		if a.Kind != Create && a.Kind != Replace {
			continue
		}
		id, err := p.start(ctx, a, true)
		if err != nil {
			return err
		}
		hostPort, err := p.Observer.HostPort(ctx, id, port)
		if err != nil {
			return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
		}
		if err := p.gateWithoutHealthcheck(ctx, a, id, hostPort); err != nil {
			return err
		}
		sw, err := p.balancer(a)
		if err != nil {
			return err
		}
		var oldBackends []string
		if a.Current != nil && a.Current.State == "running" {
			if hp, err := p.Observer.HostPort(ctx, a.Current.ID, port); err == nil {
				oldBackends = []string{"127.0.0.1:" + hp}
			}
		}
		switchStart := time.Now()
		if err := sw.Switch(ctx, []string{"127.0.0.1:" + hostPort}); err != nil {
			// lb marks a configuration nginx rejects as a verdict; the
			// rest (nginx down, no answer) is an outage.
			return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
		}
		p.done(fmt.Sprintf("switch %s to 127.0.0.1:%s", a.Service, hostPort))
		if oldBackends != nil {
			p.undo = append(p.undo, undoStep{fmt.Sprintf("switch %s back to %s", a.Service, oldBackends[0]), func(ctx context.Context) error { return sw.Switch(ctx, oldBackends) }})
		}
		p.log.Info("load balancer switched", "service", a.Service, "backend", "127.0.0.1:"+hostPort, "took", time.Since(switchStart).Round(time.Millisecond))
		if a.Current != nil {
			p.remove = append(p.remove, *a.Current)
		}
	}
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

func (p *deploy) balancer(a Action) (Switcher, error) {
	var sw Switcher
	if p.Switcher != nil {
		sw = p.Switcher(p.in.Env)
	}
	if sw == nil {
		return nil, failure.AsVerdict(fmt.Errorf("service %s: no load balancer configured", a.Service))
	}
	return sw, nil
}

func (p *deploy) ensureBalancer(ctx context.Context, a Action, port string) error {
	hp, err := p.Observer.HostPort(ctx, a.Current.ID, port)
	if err != nil {
		return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
	}
	sw, err := p.balancer(a)
	if err != nil {
		return err
	}
	if err := sw.Switch(ctx, []string{"127.0.0.1:" + hp}); err != nil {
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
		if a.Kind == Remove && a.Current != nil {
			p.remove = append(p.remove, *a.Current)
		}
	}
	// From here on the revision is live: failures to clean up are logged,
	// not rolled back.
	p.undo = nil
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
				if err := p.Containers.Stop(ctx, m.ID, nil); err != nil {
					return err
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
