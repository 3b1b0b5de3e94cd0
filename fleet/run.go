package fleet

import (
	"context"
	"sync"
	"time"

	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
)

// Run keeps the agent's side of the fleet up until ctx ends: a live
// session (a new one whenever the last one dies), the host records
// (rewritten on change and on every new session), the rare last-seen
// record, the clock-skew estimate, and the outbox of results that could
// not be written while etcd was unreachable. The calls that coordinate
// (Migrate, Admit, ClaimJob) work without it, but only Run notices a lost
// session at once and republishes the host.
func (c *Client) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel) // Close ends Run too
	defer stop()
	// While etcd is away, Run tries again at least every quarter of the
	// lease TTL: when etcd returns it restores every lease with a fresh
	// TTL, and this session's must be kept alive (and its results written)
	// before that TTL runs out. Any call etcd answers wakes it sooner.
	maxBackoff := min(retryPolicy.Max, max(c.cfg.LeaseTTL/4, 500*time.Millisecond))
	retry := backoff.Policy{Min: min(retryPolicy.Min, maxBackoff), Max: maxBackoff, Jitter: retryPolicy.Jitter}
	failed := 0 // calls failed in a row
	var skewAt, seenAt, pruneAt time.Time
	down := false
	for {
		sess, err := c.Session(ctx)
		if err != nil {
			if ctx.Err() != nil || c.isClosed() {
				return
			}
			if !down {
				c.log.Warn("etcd unreachable: coordinated steps wait until it answers", "error", err)
				down = true
			}
			failed++
			if !sleepOrKick(ctx, c.kickc, retry.Delay(failed)) {
				return
			}
			continue
		}
		// Results first: a migration's result that waited through an
		// outage lands before its lock could be read as abandoned.
		ferr := c.Flush(ctx)
		if down {
			c.log.Info("etcd reachable again", "results_waiting", c.Pending())
			down = false
			failed = 0
		}
		now := time.Now()
		if now.Sub(skewAt) >= c.opts.SeenInterval {
			if c.measureSkew(ctx) == nil {
				skewAt = now
			}
		} else {
			c.checkSkew() // a clock stepped since: no need to measure again
		}
		refreshSeen := now.Sub(seenAt) >= c.opts.SeenInterval
		perr := c.publishAll(ctx, refreshSeen)
		if perr == nil && refreshSeen {
			seenAt = now
		}
		if perr == nil && now.Sub(pruneAt) >= 24*time.Hour {
			c.pruneSeen(ctx)
			pruneAt = now
		}
		if ferr == nil {
			ferr = c.Flush(ctx)
		}
		wait := min(c.opts.SeenInterval-time.Since(seenAt), c.opts.SeenInterval-time.Since(skewAt), skewCheck)
		if next := c.settleClaims(ctx); !next.IsZero() {
			wait = min(wait, time.Until(next))
		}
		if perr != nil || ferr != nil {
			failed++
			wait = min(wait, retry.Delay(failed))
		} else {
			failed = 0
		}
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-sess.Done():
			if ctx.Err() != nil || c.isClosed() {
				return
			}
			c.log.Warn("etcd session's keepalives went unanswered: keeping its lease if etcd still has it, else starting a new one")
		case <-c.kickc:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}

// skewCheck is how often Run compares this host's clock with its
// estimate of etcd's (no network: a stepped clock shows within it).
const skewCheck = 30 * time.Second

// retryPolicy is how the fleet's background loops wait after etcd failed
// to answer: from 1 s, doubling, to 30 s, spread ±20 % so a fleet whose
// etcd comes back does not ask again all at the same instant.
var retryPolicy = backoff.Policy{Min: time.Second, Max: 30 * time.Second, Jitter: 0.2}

// sleepOrKick waits d, or until kick (etcd answered a call: try now) or
// ctx; false if ctx ended.
func sleepOrKick(ctx context.Context, kick <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-kick:
	case <-ctx.Done():
		return false
	}
	return true
}

// outbox keeps results that could not be written while etcd was
// unreachable. Each is a compare-and-swap that is retried until it lands
// or finds itself superseded; order is kept. It lives in memory: an agent
// killed before etcd came back leaves the step "running", which the fleet
// reads as interrupted (never as "run it again").
type outbox struct {
	flush sync.Mutex // one Flush at a time: an item is tried by one caller
	mu    sync.Mutex
	items []pending
}

type pending struct {
	what string
	fn   func(ctx context.Context) error
}

// later runs fn now and, if etcd is unreachable, keeps it for Run to
// retry (queued). fn must be a compare-and-swap that is safe to repeat.
// The caller's cancellation does not stop the first attempt: a step that
// finished records its result even during shutdown.
func (c *Client) later(ctx context.Context, what string, fn func(ctx context.Context) error) (queued bool, err error) {
	c.out.mu.Lock()
	behind := len(c.out.items) > 0
	c.out.mu.Unlock()
	if !behind { // keep order: behind earlier results, never before them
		err := fn(context.WithoutCancel(ctx))
		if err == nil || !failure.IsOutage(err) {
			return false, err
		}
		c.log.Warn("etcd unreachable: result kept, written when etcd answers", "what", what, "error", err)
	}
	c.step("kept in the outbox: " + what)
	c.out.mu.Lock()
	c.out.items = append(c.out.items, pending{what: what, fn: fn})
	c.out.mu.Unlock()
	c.kick()
	return true, nil
}

// Flush writes the kept results, in order, stopping at the first that
// still fails. It returns nil when nothing is left.
func (c *Client) Flush(ctx context.Context) error {
	c.out.flush.Lock()
	defer c.out.flush.Unlock()
	for {
		c.out.mu.Lock()
		if len(c.out.items) == 0 {
			c.out.mu.Unlock()
			return nil
		}
		p := c.out.items[0]
		c.out.mu.Unlock()
		if err := p.fn(ctx); err != nil && failure.IsOutage(err) {
			return err
		} else if err != nil {
			// etcd refused it for good (a verdict, permission denied):
			// the results behind it must not wait for it.
			c.log.Warn("kept result dropped: etcd refused it, and retrying cannot change that", "what", p.what, "error", err)
		} else {
			c.log.Info("kept result written", "what", p.what)
		}
		c.out.mu.Lock()
		c.out.items = c.out.items[1:]
		c.out.mu.Unlock()
	}
}

// Pending is the number of results waiting for etcd.
func (c *Client) Pending() int {
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	return len(c.out.items)
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}
