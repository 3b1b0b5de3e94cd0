package gitsource

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Poller runs a check on an interval with jitter, backs off exponentially
// (with jitter) while the check fails, honours a server's Retry-After, and
// runs an extra check when triggered (a webhook). Triggers that arrive in a
// burst, or while a check runs, collapse into one check.
type Poller struct {
	Interval   time.Duration // between successful checks; default 60 s
	Jitter     float64       // ± fraction of every wait; default 0.1
	MinBackoff time.Duration // first wait after a failure; default 5 s
	MaxBackoff time.Duration // cap on waits after failures; default 10 min

	trigger chan struct{}
}

// NewPoller returns a poller with the defaults for interval 0 values.
func NewPoller(interval time.Duration) *Poller {
	p := &Poller{Interval: interval, trigger: make(chan struct{}, 1)}
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

// Run checks at once, then on the schedule, until ctx ends.
func (p *Poller) Run(ctx context.Context, check func(context.Context) error) {
	failures := 0
	for {
		// Triggers that came before this check starts are answered by it.
		select {
		case <-p.trigger:
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
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
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
	d := p.MinBackoff
	for i := 1; i < failures && d < p.MaxBackoff; i++ {
		d *= 2
	}
	return p.jitter(min(d, p.MaxBackoff))
}

// jitter spreads d by ±Jitter so that a fleet does not poll in lockstep.
func (p *Poller) jitter(d time.Duration) time.Duration {
	if p.Jitter <= 0 {
		return d
	}
	f := 1 + p.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}
