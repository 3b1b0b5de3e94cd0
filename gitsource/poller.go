package gitsource

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"berth.dev/berth/internal/backoff"
)

// Poller runs a check on an interval with jitter, backs off exponentially
// (with jitter) while the check fails, honours a server's Retry-After, and
// runs an extra check when triggered (a webhook). Triggers that arrive in a
// burst, or while a check runs, collapse into one check.
//
// An OnDemand poller has no interval of its own: another poller's clock
// drives it with Tick (several environments checked on one listing of the
// repo), and Trigger still runs a check at once. Its backoff after a
// failure is its own: a Tick does not cut it short, a Trigger does.
type Poller struct {
	Interval   time.Duration // between successful checks; default 60 s
	Jitter     float64       // ± fraction of every wait; default 0.1
	MinBackoff time.Duration // first wait after a failure; default 5 s
	MaxBackoff time.Duration // cap on waits after failures; default 10 min
	OnDemand   bool          // no interval: checks on Tick and Trigger
	// Phase, when set, delays the first check by a random duration in
	// [0, Phase) (a Trigger still runs it at once). Agents started at the
	// same moment — a fleet-wide restart, an autoscaling group replaced —
	// would otherwise poll the Git server in lockstep: all at once, then
	// again within the ±Jitter window of one interval. With Phase equal
	// to the interval their polls spread evenly from the first one (the
	// 1,000-agent benchmark in docs/benchmarks.md, "Fleets").
	Phase time.Duration

	trigger chan struct{}
	tick    chan struct{}
}

// NewPoller returns a poller with the defaults for interval 0 values.
func NewPoller(interval time.Duration) *Poller {
	p := &Poller{Interval: interval, trigger: make(chan struct{}, 1), tick: make(chan struct{}, 1)}
	if p.Interval <= 0 {
		p.Interval = 60 * time.Second
	}
	p.Jitter = 0.1
	p.MinBackoff = 5 * time.Second
	p.MaxBackoff = 10 * time.Minute
	return p
}

// Trigger asks for a check now. It never blocks.
func (p *Poller) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default: // one is pending already
	}
}

// Tick asks an OnDemand poller for a check, unless it is backing off
// after a failure (then the check at the end of the backoff answers it).
// It never blocks.
func (p *Poller) Tick() {
	select {
	case p.tick <- struct{}{}:
	default:
	}
}

// Run checks at once (an OnDemand poller: at the first Tick or Trigger),
// then on the schedule, until ctx ends.
func (p *Poller) Run(ctx context.Context, check func(context.Context) error) {
	if p.OnDemand {
		select {
		case <-ctx.Done():
			return
		case <-p.tick:
		case <-p.trigger:
		}
	}
	if p.Phase > 0 && !p.OnDemand {
		t := time.NewTimer(rand.N(p.Phase))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-p.trigger:
			t.Stop()
		}
	}
	failures := 0
	for {
		// Triggers and ticks that came before this check starts are
		// answered by it.
		select {
		case <-p.trigger:
		default:
		}
		select {
		case <-p.tick:
		default:
		}
		err := check(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := p.jitter(p.Interval)
		var notBefore time.Time
		if err != nil {
			failures++
			wait = p.backoff(failures)
			var ra *RetryAfterError
			if errors.As(err, &ra) && ra.After > 0 {
				if ra.After > wait {
					wait = ra.After
				}
				// Even a webhook must not make the agent call again
				// before the server said it may.
				notBefore = time.Now().Add(ra.After)
			}
		} else {
			failures = 0
		}
		timer := time.NewTimer(wait)
		timeout, tick := timer.C, (<-chan struct{})(nil)
		if err == nil && p.OnDemand {
			timer.Stop()
			timeout, tick = nil, p.tick // no timer: the next tick
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timeout:
		case <-tick:
		case <-p.trigger:
			timer.Stop()
			if d := time.Until(notBefore); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
	}
}

// backoff is MinBackoff doubled per consecutive failure, capped, jittered.
func (p *Poller) backoff(failures int) time.Duration {
	return backoff.Policy{Min: p.MinBackoff, Max: p.MaxBackoff, Jitter: p.Jitter}.Delay(failures)
}

// jitter spreads d by ±Jitter so that a fleet does not poll in lockstep.
func (p *Poller) jitter(d time.Duration) time.Duration {
	if p.Jitter <= 0 {
		return d
	}
	f := 1 + p.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
