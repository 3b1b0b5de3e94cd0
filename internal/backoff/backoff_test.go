package backoff

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestPolicy_DelayDoublesUpToTheCap(t *testing.T) {
	p := Policy{Min: time.Second, Max: 30 * time.Second}
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := p.Delay(n); got != w {
			t.Errorf("Delay(%d) = %s, want %s", n, got, w)
		}
	}
	if got := p.Delay(1 << 20); got != 30*time.Second {
		t.Errorf("Delay of a very long outage = %s, want the cap", got)
	}
}

func TestPolicy_JitterStaysWithinItsSpreadAndTheCap(t *testing.T) {
	p := Policy{Min: 10 * time.Second, Max: 15 * time.Second, Jitter: 0.2}
	seen := map[bool]bool{}
	for range 500 {
		d := p.Delay(1)
		if d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("Delay(1) = %s, outside 10s ±20%%", d)
		}
		seen[d < 10*time.Second] = true
		if d := p.Delay(5); d > 15*time.Second || d < 12*time.Second {
			t.Fatalf("Delay(5) = %s, outside the cap's lower spread", d)
		}
	}
	if !seen[true] || !seen[false] {
		t.Fatal("the jitter spreads both ways")
	}
}

func TestPolicy_WaitEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := Policy{Min: time.Minute, Max: time.Hour}
		start := time.Now()
		if !p.Wait(t.Context(), 3) || time.Since(start) != 4*time.Minute {
			t.Fatalf("a whole wait: %s", time.Since(start))
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start = time.Now()
		if p.Wait(ctx, 1) || time.Since(start) != 10*time.Second {
			t.Fatalf("a wait cut by its context: %s", time.Since(start))
		}
	})
}
