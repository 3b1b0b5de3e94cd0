package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// A service's new containers, one per replica, are created (possibly
// ahead of their phase, while the phase before it runs), then started and
// gated together: the set passes only when every one of them did.

// newSet is one action's new containers.
type newSet struct {
	a     Action
	ids   []string
	names []string
	// ports are the loopback host ports of a server's containers, once
	// started, in the order of ids.
	ports []string
}

// backends are the set's addresses for the balancer.
func (s *newSet) backends() []string {
	var out []string
	for _, p := range s.ports {
		out = append(out, "127.0.0.1:"+p)
	}
	return out
}

// nextSlot is one above every slot the service's containers use.
func nextSlot(a Action) int {
	slot := 0
	for _, m := range a.Current {
		slot = max(slot, m.Slot)
	}
	for _, m := range a.Stale {
		slot = max(slot, m.Slot)
	}
	return slot + 1
}

// create creates the action's new containers at the next free slots, each
// removed on rollback. Nothing runs yet.
func (p *deploy) create(ctx context.Context, a Action, publish bool) (*newSet, error) {
	set := &newSet{a: a}
	first := nextSlot(a)
	for i := range max(a.Replicas, 1) {
		req, err := p.request(a, first+i, false, publish)
		if err != nil {
			return set, err
		}
		id, err := p.Containers.Create(ctx, req)
		if err != nil {
			return set, asOutage(fmt.Errorf("service %s: %w", a.Service, err))
		}
		p.addUndoApart("remove "+req.Name, func(ctx context.Context) error { return p.Containers.Remove(ctx, id) })
		p.done("create " + req.Name)
		set.ids, set.names = append(set.ids, id), append(set.names, req.Name)
	}
	return set, nil
}

// createAhead starts creating the new containers of actions in the
// background, while the current phase runs (a health gate, a migration):
// the next phase finds them made. Creating changes nothing that runs, so
// the phase order holds: nothing of the next phase starts before this one
// passed.
func (p *deploy) createAhead(ctx context.Context, actions []Action, publish bool) {
	for _, a := range actions {
		if _, ok := p.ahead[a.Service]; ok {
			continue
		}
		ch := make(chan aheadSet, 1)
		p.ahead[a.Service] = ch
		p.aheadWG.Add(1)
		log := p.log // the deploy moves on to its next phase meanwhile
		go func() {
			defer p.aheadWG.Done()
			var set *newSet
			where := PhaseWorkers // the phase the containers are for
			if publish {
				where = PhaseServers
			}
			err := safely(log, where, func() (err error) {
				set, err = p.create(ctx, a, publish)
				return err
			})
			ch <- aheadSet{set, err}
		}()
	}
}

type aheadSet struct {
	set *newSet
	err error
}

// created returns the action's new containers: made ahead, or now.
func (p *deploy) created(ctx context.Context, a Action, publish bool) (*newSet, error) {
	if ch, ok := p.ahead[a.Service]; ok {
		delete(p.ahead, a.Service)
		r := <-ch
		return r.set, r.err
	}
	return p.create(ctx, a, publish)
}

// launch starts the set's containers and waits until every one passed its
// health gate (in parallel: the set takes as long as its slowest).
func (p *deploy) launch(ctx context.Context, set *newSet) error {
	a := set.a
	svc := p.in.Env.Service(a.Service)
	for i, id := range set.ids {
		if err := p.Containers.Start(ctx, id); err != nil {
			return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
		}
		p.log.Info("container started", "service", a.Service, "container", set.names[i])
	}
	timeout := p.HealthTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if hc := svc.Config.HealthCheck; hc != nil && hc.StartPeriod != nil {
		timeout += time.Duration(*hc.StartPeriod)
	}
	settle := p.Settle
	if settle <= 0 {
		settle = 5 * time.Second
	}
	server := a.Role == envs.RoleServer
	if server {
		set.ports = make([]string, len(set.ids))
	}
	errs := make([]error, len(set.ids))
	var wg sync.WaitGroup
	for i, id := range set.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = safely(p.log, "health", func() error {
				started := time.Now()
				if err := p.Observer.WaitHealthy(ctx, id, timeout, settle); err != nil {
					// Docker not answering is an outage; a container that
					// exits or never reports healthy is the revision's.
					return asVerdict(fmt.Errorf("service %s: %w", a.Service, err))
				}
				if server {
					port := strconv.Itoa(svc.Berth.Port) + "/tcp"
					hp, err := p.Observer.HostPort(ctx, id, port)
					if err != nil {
						return asOutage(fmt.Errorf("service %s: %w", a.Service, err))
					}
					set.ports[i] = hp
					if err := p.gateWithoutHealthcheck(ctx, a, id, hp); err != nil {
						return err
					}
				}
				p.log.Info("container healthy", "service", a.Service, "container", set.names[i], "waited", time.Since(started).Round(time.Millisecond))
				p.progressed()
				return nil
			})
		}()
	}
	wg.Wait()
	return firstError(errs)
}

// firstError joins errs, an outage first (an outage beside a verdict is an
// outage), each once.
func firstError(errs []error) error {
	var keep []error
	for _, err := range errs {
		if err != nil && !slices.ContainsFunc(keep, func(k error) bool { return k.Error() == err.Error() }) {
			keep = append(keep, err)
		}
	}
	slices.SortStableFunc(keep, func(a, b error) int { return strings.Compare(classOrder(a), classOrder(b)) })
	return errors.Join(keep...)
}

func classOrder(err error) string {
	if inherent(err) == failure.Outage {
		return "0"
	}
	return "1"
}

// addUndo notes how to put back one change; safe from parallel steps.
func (p *deploy) addUndo(what string, run func(context.Context) error) {
	p.mu.Lock()
	p.undo = append(p.undo, undoStep{what: what, run: run})
	p.mu.Unlock()
}

// addUndoApart is addUndo for a step that may run beside its neighbours
// (a removal of a new container).
func (p *deploy) addUndoApart(what string, run func(context.Context) error) {
	p.mu.Lock()
	p.undo = append(p.undo, undoStep{what: what, run: run, apart: true})
	p.mu.Unlock()
}

// hostPorts are the loopback addresses of running containers' port.
func (p *deploy) hostPorts(ctx context.Context, ms []engine.Managed, port string) ([]string, error) {
	var out []string
	for _, m := range ms {
		if m.State != "running" {
			continue
		}
		hp, err := p.Observer.HostPort(ctx, m.ID, port)
		if err != nil {
			return nil, err
		}
		out = append(out, "127.0.0.1:"+hp)
	}
	return out, nil
}
