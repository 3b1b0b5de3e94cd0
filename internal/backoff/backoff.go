// Package backoff owns berth's one retry pace: after the n-th failure in
// a row wait Min doubled n-1 times, never more than Max, spread by
// ±Jitter so that a fleet's hosts do not retry in lockstep; a wait ends
// early when its context does. Every loop that retries an outage (the
// poller, the engine's event streams, the forge reporter, the removal of
// a one-shot the engine did not answer for) takes its delays from here.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped, jittered exponential pace.
type Policy struct {
	// Min is the wait after the first failure, Max the longest wait.
	Min, Max time.Duration
	// Jitter spreads each wait by ±Jitter of it (0.1: ±10 %); 0 spreads
	// nothing. A jittered wait never exceeds Max.
	Jitter float64
}

// Delay is the wait after the n-th failure in a row (n < 1 counts as 1).
func (p Policy) Delay(n int) time.Duration {
	d := p.Min
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	if p.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + p.Jitter*(2*rand.Float64()-1)))
		if p.Max > 0 {
			d = min(d, p.Max)
		}
	}
	return max(d, 0)
}

// Wait waits Delay(n), or until ctx ends; it says whether the whole wait
// passed.
func (p Policy) Wait(ctx context.Context, n int) bool {
	return Sleep(ctx, p.Delay(n)) == nil
}

// Sleep waits d, or until ctx ends; it returns ctx's error when the wait
// was cut short, nil when the whole of d passed.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
