package daemon

import (
	"context"
	"sync"
	"sync/atomic"

	"berth.dev/berth/gitsource"
	"berth.dev/berth/reconcile"
)

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
