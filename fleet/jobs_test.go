package fleet

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// simClock runs a simulated clock speed times faster than the real one
// (60: a minute of schedule is a second of test).
type simClock struct {
	start, real time.Time
	speed       time.Duration
}

func newSimClock(start time.Time, speed int) *simClock {
	return &simClock{start: start, real: time.Now(), speed: time.Duration(speed)}
}

func (s *simClock) now(off time.Duration) func() time.Time {
	return func() time.Time { return s.start.Add(s.speed*time.Since(s.real) + off) }
}

// at is the simulated time at real time t.
func (s *simClock) at(t time.Time) time.Time { return s.start.Add(s.speed * t.Sub(s.real)) }

// realDelay is how long to sleep for the simulated clock to reach t.
func (s *simClock) realDelay(now func() time.Time, t time.Time) time.Duration {
	return t.Sub(now()) / s.speed
}

// scheduler is the smallest scheduler loop a host runs for one job: at
// each scheduled time T from the cron spec (by its own clock) it claims
// T, and runs it if the claim is its own. When etcd is unreachable it
// keeps the latest missed T and tries it again until its deadline.
func scheduler(ctx context.Context, a *agent, sim *simClock, now func() time.Time, spec cron.Schedule, from time.Time, n int,
	p JobPolicy, runFor time.Duration, ran func(host string, t, asked time.Time)) {
	var missed *time.Time
	t := from
	for i := 0; i < n && ctx.Err() == nil; {
		next := spec.Next(t)
		// Before the next time, retry a missed one (the latest only).
		for missed != nil && ctx.Err() == nil && now().Before(next) {
			if try(ctx, a, *missed, p, runFor, ran) {
				missed = nil
				break
			}
			if now().Sub(*missed) > p.StartingDeadline {
				missed = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if d := sim.realDelay(now, next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		}
		t, i = next, i+1
		if !try(ctx, a, t, p, runFor, ran) {
			tt := t
			missed = &tt
		}
	}
}

// try claims t and runs it; it reports false only when etcd was
// unreachable (the time may be retried). ran learns when the claim was
// asked for.
func try(ctx context.Context, a *agent, t time.Time, p JobPolicy, runFor time.Duration, ran func(host string, t, asked time.Time)) bool {
	asked := time.Now()
	claim, err := a.ClaimJob(ctx, "prod", "cleanup", t, p)
	switch {
	case errors.Is(err, ErrClaimed), errors.Is(err, ErrTooLate):
		return true
	case err != nil:
		return false
	}
	ran(a.Host(), t, asked)
	start := time.Now()
	time.Sleep(runFor)
	_ = claim.Finish(ctx, JobResult{Status: JobSucceeded, Started: start, Ended: time.Now()})
	return true
}

func TestJobs_EveryMinuteForTenMinutes_ExactlyTenRuns_OneClock90sAhead(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	spec, err := cron.ParseStandard("* * * * *")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	sim := newSimClock(start, 60)
	offsets := map[string]time.Duration{"web-1": 0, "web-2": 0, "web-3": 90 * time.Second}
	var mu sync.Mutex
	runs := map[time.Time][]string{}
	ran := func(host string, t, _ time.Time) {
		mu.Lock()
		runs[t] = append(runs[t], host)
		mu.Unlock()
	}
	ctx := ctxT(t, 2*time.Minute)
	var wg sync.WaitGroup
	var as []*agent
	for _, h := range []string{"web-1", "web-2", "web-3"} {
		a := newAgent(t, eps, h, withNow(sim.now(offsets[h])))
		as = append(as, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			scheduler(ctx, a, sim, sim.now(offsets[h]), spec, start, 10, JobPolicy{StartingDeadline: 5 * time.Minute, History: 50}, 50*time.Millisecond, ran)
		}()
	}
	wg.Wait()
	if len(runs) != 10 {
		t.Fatalf("%d scheduled times ran, want 10: %v", len(runs), runs)
	}
	for tm, hosts := range runs {
		if len(hosts) != 1 {
			t.Errorf("%s ran on %v", tm, hosts)
		}
	}
	recs, err := as[0].JobRuns(ctx, "prod", "cleanup", 0)
	if err != nil || len(recs) != 10 {
		t.Fatalf("records: %d, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Host == "" || r.Status != JobSucceeded || r.Token == 0 {
			t.Errorf("record %+v: want its host, succeeded, a token", r)
		}
	}
}

// A host whose clock is 2 h ahead claims nothing (a time in the fleet's
// future would make the job's high-water mark refuse every earlier time
// on every host), blocks no one, and says how far off it is; once its
// clock is fixed it claims again.
func TestJobs_HostClockTwoHoursAhead_ClaimsNothing_BlocksNoOne(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	var off atomic.Int64
	off.Store(int64(2 * time.Hour))
	skewed := newAgent(t, eps, "web-3", withNow(func() time.Time { return time.Now().Add(time.Duration(off.Load())) }))
	right := newAgent(t, eps, "web-1")
	ctx := ctxT(t, time.Minute)
	skewed.Publish("prod", HostState{})
	t1 := skewed.now().Truncate(time.Second)
	_, err := skewed.ClaimJob(ctx, "prod", "cleanup", t1, JobPolicy{})
	if !errors.Is(err, ErrClockAhead) || !errors.Is(err, ErrClaimed) {
		t.Fatalf("a claim 2 h in etcd's future: %v; want ErrClockAhead (and ErrClaimed)", err)
	}
	if skew, ok := skewed.ClockSkew(); !ok || (skew-2*time.Hour).Abs() > 2*time.Second {
		t.Fatalf("skew %s (%t), want 2h", skew, ok)
	}
	// The others go on claiming the present.
	now := time.Now().Truncate(time.Second)
	c, err := right.ClaimJob(ctx, "prod", "cleanup", now, JobPolicy{})
	if err != nil {
		t.Fatalf("a host with a right clock: %v", err)
	}
	_ = c.Finish(ctx, JobResult{Status: JobSucceeded})
	waitFor(t, 10*time.Second, "web-3's skew in its host record", func() bool {
		hs, err := right.List(ctx, "prod")
		for _, h := range hs {
			if h.Host == "web-3" && (h.ClockSkew-2*time.Hour).Abs() <= 2*time.Second {
				return true
			}
		}
		_ = err
		return false
	})
	// Its clock fixed, it claims again: nothing was left to undo.
	off.Store(0)
	if skew, _ := skewed.ClockSkew(); skew.Abs() > 2*time.Second {
		t.Fatalf("skew after the fix: %s", skew)
	}
	c, err = skewed.ClaimJob(ctx, "prod", "cleanup", now.Add(time.Second), JobPolicy{})
	if err != nil {
		t.Fatalf("web-3 with its clock fixed: %v", err)
	}
	_ = c.Finish(ctx, JobResult{Status: JobSucceeded})
}

func TestJobs_HostsRacingForTheSameTime_OneClaimEach(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	ctx := ctxT(t, time.Minute)
	base := time.Now().Add(-time.Minute).Truncate(time.Minute)
	for k := range 20 {
		tm := base.Add(time.Duration(k) * time.Second)
		var won atomic.Int32
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for _, a := range as {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				c, err := a.ClaimJob(ctx, "prod", "cleanup", tm, JobPolicy{})
				if err == nil {
					won.Add(1)
					_ = c.Finish(ctx, JobResult{Status: JobSucceeded})
				} else if !errors.Is(err, ErrClaimed) {
					t.Errorf("%s: %v", a.Host(), err)
				}
			}()
		}
		close(gate)
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("time %d: %d claims won, want 1", k, won.Load())
		}
	}
}

func TestJobs_HistoryKeptAndOldTimesNeverClaimedAgain(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	ctx := ctxT(t, time.Minute)
	base := time.Now().Truncate(time.Minute)
	p := JobPolicy{History: 3, StartingDeadline: time.Hour}
	for k := range 5 {
		c, err := a.ClaimJob(ctx, "prod", "cleanup", base.Add(time.Duration(k)*time.Second), p)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Finish(ctx, JobResult{Status: JobSucceeded})
	}
	recs, _ := a.JobRuns(ctx, "prod", "cleanup", 0)
	if len(recs) != 3 || !recs[0].Scheduled.Equal(base.Add(4*time.Second)) {
		t.Fatalf("kept %d records (newest %v), want the 3 newest", len(recs), recs)
	}
	// The pruned times stay claimed: the job's high-water mark is ahead.
	if _, err := a.ClaimJob(ctx, "prod", "cleanup", base, p); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claim of a pruned time: %v, want ErrClaimed", err)
	}
	if _, err := a.ClaimJob(ctx, "prod", "cleanup", time.Now().Add(-2*time.Hour), p); !errors.Is(err, ErrTooLate) {
		t.Fatalf("claim past the deadline: %v, want ErrTooLate", err)
	}
}

// A job runner stopped (SIGSTOP) past its lease TTL, then continued: no
// other host runs that time again, and the record notes the lease loss.
func TestJobs_SIGSTOPPastTTL_NoRerun_RecordNotesLeaseLoss(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	tm := time.Now().Truncate(time.Second)
	h := startHelper(t, "job", "web-1", eps, 2*time.Second,
		"FLEET_T="+strconv.FormatInt(tm.UnixNano(), 10), "FLEET_RUN=1s")
	waitFor(t, 20*time.Second, "the helper to claim the time", func() bool { return len(h.marks()) == 1 })
	h.signal(t, syscall.SIGSTOP)
	others := []*agent{newAgent(t, eps, "web-2"), newAgent(t, eps, "web-3")}
	ctx := ctxT(t, time.Minute)
	r := raw(t, eps...)
	waitFor(t, 10*time.Second, "the stopped runner's lease to expire", func() bool {
		g, err := r.Get(ctx, others[0].keys("prod").job("cleanup")+"/active/", clientPrefix()...)
		return err == nil && g.Count == 0
	})
	for _, a := range others {
		if _, err := a.ClaimJob(ctx, "prod", "cleanup", tm, JobPolicy{}); !errors.Is(err, ErrClaimed) {
			t.Fatalf("%s: %v, want ErrClaimed", a.Host(), err)
		}
	}
	recs, _ := others[0].JobRuns(ctx, "prod", "cleanup", 0)
	if len(recs) != 1 || recs[0].Status != JobLost {
		t.Fatalf("while stopped: %+v, want one record shown lost", recs)
	}
	h.signal(t, syscall.SIGCONT)
	waitFor(t, 20*time.Second, "the helper to finish", func() bool { return len(h.marks()) == 2 })
	recs, _ = others[0].JobRuns(ctx, "prod", "cleanup", 0)
	if len(recs) != 1 || recs[0].Host != "web-1" || recs[0].Status != JobSucceeded || !recs[0].LeaseLost ||
		!strings.Contains(recs[0].Reason, "lease lost") {
		t.Fatalf("after SIGCONT: %+v", recs)
	}
}
