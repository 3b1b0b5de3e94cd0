package gitsource

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a check that records when it ran and returns queued errors.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	at    []time.Duration
	errs  []error
}

func (r *recorder) check(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, time.Since(r.start))
	if len(r.errs) > 0 {
		err := r.errs[0]
		r.errs = r.errs[1:]
		return err
	}
	return nil
}

func (r *recorder) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.at...)
}

func run(t *testing.T, p *Poller, r *recorder, d time.Duration) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	r.start = time.Now()
	go func() { p.Run(ctx, r.check); close(done) }()
	time.Sleep(d)
	cancel()
	<-done
}

func TestPoller_IntervalWithJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoller(time.Minute)
		r := &recorder{}
		run(t, p, r, 10*time.Minute+time.Second)
		at := r.times()
		if len(at) < 10 || len(at) > 12 {
			t.Fatalf("%d checks in 10 min at a 60 s ± 10%% interval: %v", len(at), at)
		}
		for i := 1; i < len(at); i++ {
			if gap := at[i] - at[i-1]; gap < 54*time.Second || gap > 66*time.Second {
				t.Errorf("gap %d = %s, want 60 s ± 10%%", i, gap)
			}
		}
	})
}

func TestPoller_ExponentialBackoffThenRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoller(time.Minute)
		p.Jitter = 0
		boom := errors.New("unreachable")
		r := &recorder{errs: []error{boom, boom, boom, boom}}
		run(t, p, r, 3*time.Minute+36*time.Second)
		want := []time.Duration{0, 5 * time.Second, 15 * time.Second, 35 * time.Second, 75 * time.Second, 135 * time.Second, 195 * time.Second}
		at := r.times()
		if len(at) != len(want) {
			t.Fatalf("checks at %v, want %v", at, want)
		}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("checks at %v, want %v", at, want)
			}
		}
	})
}

func TestPoller_RetryAfterHoldsEvenATrigger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoller(time.Minute)
		p.Jitter = 0
		r := &recorder{errs: []error{&RetryAfterError{Err: errors.New("429"), After: 2 * time.Minute}}}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r.start = time.Now()
		go p.Run(ctx, r.check)
		time.Sleep(10 * time.Second)
		p.Trigger()
		time.Sleep(time.Second)
		if n := len(r.times()); n != 1 {
			t.Fatalf("%d checks 11 s after a Retry-After of 2 min, want 1", n)
		}
		time.Sleep(2 * time.Minute)
		if at := r.times(); len(at) != 2 || at[1] != 2*time.Minute {
			t.Fatalf("checks at %v, want the second at 2m0s", at)
		}
	})
}

func TestPoller_BurstOfTriggersIsOneCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoller(time.Hour)
		r := &recorder{}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r.start = time.Now()
		go p.Run(ctx, r.check)
		synctest.Wait()
		for range 100 {
			p.Trigger()
		}
		synctest.Wait()
		time.Sleep(time.Second)
		if n := len(r.times()); n != 2 {
			t.Fatalf("%d checks after the first plus a burst of 100 triggers, want 2", n)
		}
	})
}

// An OnDemand poller checks on Tick and Trigger only; after a failure its
// own backoff decides, a Tick does not cut it short and a Trigger does.
func TestPoller_OnDemandTicksDoNotCutItsBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := NewPoller(time.Minute)
		p.OnDemand, p.Jitter = true, 0
		boom := errors.New("registry unreachable")
		r := &recorder{errs: []error{nil, boom}}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		r.start = time.Now()
		go p.Run(ctx, r.check)
		time.Sleep(10 * time.Minute)
		if n := len(r.times()); n != 0 {
			t.Fatalf("%d checks before the first tick", n)
		}
		p.Tick() // at 10m: ok
		synctest.Wait()
		time.Sleep(time.Minute)
		p.Tick() // at 11m: fails, backoff 5 s
		synctest.Wait()
		time.Sleep(2 * time.Second)
		p.Tick() // at 11m02s: inside the backoff, answered by its check at 11m05s
		time.Sleep(10 * time.Second)
		want := []time.Duration{10 * time.Minute, 11 * time.Minute, 11*time.Minute + 5*time.Second}
		if at := r.times(); len(at) != len(want) || at[0] != want[0] || at[1] != want[1] || at[2] != want[2] {
			t.Fatalf("checks at %v, want %v", at, want)
		}
		time.Sleep(time.Hour) // no tick: no check
		if n := len(r.times()); n != 3 {
			t.Fatalf("%d checks without a tick", n)
		}
		p.Trigger()
		synctest.Wait()
		if n := len(r.times()); n != 4 {
			t.Fatalf("a trigger: %d checks", n)
		}
	})
}

func TestPoller_PhaseSpreadsTheFirstCheckOfPollersStartedTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 200
		rs := make([]*recorder, n)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		start := time.Now()
		for i := range rs {
			p := NewPoller(time.Minute)
			p.Phase = time.Minute
			rs[i] = &recorder{start: start}
			wg.Add(1)
			go func() { defer wg.Done(); p.Run(ctx, rs[i].check) }()
		}
		time.Sleep(59*time.Second + 999*time.Millisecond)
		perTen := make([]int, 6) // first checks per 10 s
		for _, r := range rs {
			at := r.times()
			if len(at) == 0 {
				t.Fatalf("a poller did not check within its phase")
			}
			perTen[at[0]/(10*time.Second)]++
		}
		for _, c := range perTen { // 33 expected in each; far from all at once
			if c < 10 || c > 60 {
				t.Errorf("first checks per 10 s: %v, want them spread over the interval", perTen)
				break
			}
		}
		// A trigger still checks at once.
		p := NewPoller(time.Minute)
		p.Phase = time.Hour
		r := &recorder{start: time.Now()}
		wg.Add(1)
		go func() { defer wg.Done(); p.Run(ctx, r.check) }()
		p.Trigger()
		time.Sleep(time.Second)
		if at := r.times(); len(at) != 1 || at[0] > time.Second {
			t.Errorf("triggered during its phase: checks at %v, want one at once", at)
		}
		cancel()
		wg.Wait()
	})
}
