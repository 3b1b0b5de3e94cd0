package fleet

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// With etcd down, every coordinated call fails as an outage, promptly;
// publishing does not block.
func TestOutage_EveryCoordinatedCallIsAnOutage(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	a := newAgent(t, []string{etcd.ClientURL}, "web-1")
	ctx := ctxT(t, time.Minute)
	if _, err := a.Session(ctx); err != nil {
		t.Fatal(err)
	}
	etcd.Stop()
	a.Publish("prod", HostState{Waiting: "etcd"})
	calls := map[string]func() error{
		"admit": func() error {
			_, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c2", Live: "c1"})
			return err
		},
		"migrate": func() error {
			_, err := a.Migrate(ctx, "prod", testMig, func(context.Context, int64) error {
				t.Error("a migration ran with etcd down")
				return nil
			})
			return err
		},
		"claim": func() error {
			_, err := a.ClaimJob(ctx, "prod", "cleanup", time.Now(), JobPolicy{})
			return err
		},
		"list": func() error { _, err := a.List(ctx, "prod"); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		if !failure.IsOutage(err) {
			t.Errorf("%s: %v, want an outage", name, err)
		}
		// A call is bounded by the per-call timeout (1 s here), plus
		// the wait for the lease to lapse when a session was live.
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("%s took %s", name, d)
		}
	}
}

// etcd stops for twice the lease TTL during a rollout and a job schedule:
// nothing coordinated starts while it is down, the deploy that was running
// finishes and its result is written once etcd is back, the rollout then
// completes, and of the scheduled times missed during the outage each
// host runs at most one (its latest, as a catch-up), each time once in the
// fleet. Per host, as docs/fleet.md promises: a host's claim of the time
// it saw last may land after a later time came due and another host ran
// that one (no claim can compare with etcd's clock).
func TestOutage_EtcdDownTwiceTTL_NothingStarts_AtMostOneCatchUpPerHost(t *testing.T) {
	etcd := testenv.StartEtcd(t) // a process: it stops at once
	eps := []string{etcd.ClientURL}
	const ttl = 2 * time.Second
	// Every 3 s on the real clock: an outage of 2×TTL misses a time or
	// two, and the next comes soon after etcd is back.
	spec, err := cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow).Parse("*/3 * * * * *")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sim := newSimClock(start, 1)
	as := agents(t, eps, 3, withTTL(ttl), withNow(sim.now(0)))
	publishAll(t, as, "c1")
	ctx := ctxT(t, 2*time.Minute)

	var mu sync.Mutex
	// A start is noted with the real time its etcd call was made (asked)
	// and the time it was let through (at).
	type event struct {
		what, host string
		asked, at  time.Time
		sched      time.Time
	}
	var events []event
	note := func(what, host string, sched, asked time.Time) {
		mu.Lock()
		events = append(events, event{what, host, asked, time.Now(), sched})
		mu.Unlock()
	}

	var wg sync.WaitGroup
	// The job: eight times.
	for _, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scheduler(ctx, a, sim, sim.now(0), spec, start, 8, JobPolicy{StartingDeadline: 10 * time.Second},
				20*time.Millisecond, func(h string, tm, asked time.Time) { note("job", h, tm, asked) })
		}()
	}
	// The rollout: one host at a time, 1.5 s each; a host whose Admit
	// fails for the outage tries again, as the agent's pass would.
	var deploying atomic.Int32
	rolled := make(chan string, len(as))
	for _, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				asked := time.Now()
				adm, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}, Live: "c1"})
				if err != nil {
					if !failure.IsOutage(err) {
						t.Errorf("%s: %v", a.Host(), err)
						return
					}
					time.Sleep(100 * time.Millisecond)
					continue
				}
				note("deploy", a.Host(), time.Time{}, asked)
				deploying.Add(1)
				time.Sleep(1500 * time.Millisecond)
				deploying.Add(-1)
				_ = adm.Finish(ctx, Succeeded, "")
				rolled <- a.Host()
				return
			}
		}()
	}
	// Stop etcd while the first host deploys.
	waitFor(t, 20*time.Second, "a deploy in progress", func() bool { return deploying.Load() == 1 })
	time.Sleep(300 * time.Millisecond)
	stopAt := time.Now()
	etcd.Stop()
	stoppedAt := time.Now() // etcd's process has exited
	time.Sleep(2 * ttl)
	restartAt := time.Now()
	etcd.Start()
	etcd.WaitHealthy(t, 30*time.Second)
	upAt := time.Now()
	wg.Wait()

	// A start asked for once etcd's process had exited and let through
	// before it was started again had no etcd behind it; so had one let
	// through well after the exit, whenever it was asked (a call in
	// flight at the stop taken as committed). A call made just before the
	// stop may be answered by etcd as it shuts down, and a goroutine on a
	// loaded machine may note its start a little late: neither is a start
	// without etcd.
	const late = 2 * time.Second // under the outage's 2×TTL
	for _, e := range events {
		if e.at.Before(restartAt) && (!e.asked.Before(stoppedAt) || e.at.After(stoppedAt.Add(late))) {
			t.Errorf("%s started on %s while etcd was down (asked %s, let through %s after the stop)", e.what, e.host,
				e.asked.Sub(stoppedAt).Round(time.Millisecond), e.at.Sub(stoppedAt).Round(time.Millisecond))
		}
	}
	if len(rolled) != len(as) {
		t.Fatalf("%d hosts rolled out, want %d", len(rolled), len(as))
	}
	// Of the scheduled times that passed while etcd was down (by the
	// simulated clock), each host ran at most one once etcd was back: a
	// catch-up is a time due before the restart that ran after it.
	simRestart := sim.at(restartAt)
	perTime := map[time.Time]int{}
	catchUps := map[string]int{}
	for _, e := range events {
		if e.what != "job" {
			continue
		}
		perTime[e.sched]++
		if !e.sched.After(simRestart) && !e.at.Before(restartAt) {
			catchUps[e.host]++
			t.Logf("catch-up: %s ran on %s, %s after etcd restarted", e.sched.Format("15:04:05"), e.host, e.at.Sub(restartAt).Round(time.Millisecond))
		}
	}
	for tm, n := range perTime {
		if n != 1 {
			t.Errorf("%s ran %d times", tm, n)
		}
	}
	for host, n := range catchUps {
		if n > 1 {
			t.Errorf("%s ran %d of the times missed during the outage; want at most one", host, n)
		}
	}
	t.Logf("outage %s; job times run: %d; catch-up runs by host: %v", upAt.Sub(stopAt).Round(time.Millisecond), len(perTime), catchUps)
	// The deploy that finished during the outage wrote its result later.
	waitFor(t, 10*time.Second, "every host's result recorded", func() bool {
		g, err := raw(t, eps...).Get(ctx, as[0].keys("prod").dones(attemptID("c2", 0)), clientPrefix()...)
		return err == nil && g.Count == 3
	})
}

// A three-member cluster (real etcd processes) loses its leader to a
// restart during a long migration: the migration runs once.
func TestCluster_LeaderRestartDuringLongMigration_NoDuplicateRun(t *testing.T) {
	cluster := testenv.StartEtcdCluster(t, 3)
	eps := cluster.Endpoints()
	as := agents(t, eps, 3, withTTL(5*time.Second))
	ctx := ctxT(t, 2*time.Minute)
	var runs atomic.Int32
	started := make(chan struct{}, 3)
	res := migrateAll(ctx, as, testMig, func(string) RunFunc {
		return func(ctx context.Context, token int64) error {
			runs.Add(1)
			started <- struct{}{}
			time.Sleep(8 * time.Second)
			return nil
		}
	})
	<-started
	time.Sleep(time.Second)
	leader := cluster.Leader(t)
	t.Logf("restarting the leader %s", leader.Name)
	leader.Restart()
	newLeader := cluster.Leader(t)
	t.Logf("leader now %s", newLeader.Name)
	var errs []error
	ran := 0
	for range as {
		x := <-res
		if x.err != nil {
			errs = append(errs, x.err)
		}
		if x.out.Ran {
			ran++
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("the migration ran %d times", runs.Load())
	}
	// The leases outlive a leader change (etcd resets their TTL): the
	// runner keeps its lock and the others skip it.
	if len(errs) > 0 || ran != 1 {
		t.Fatalf("ran = %d, errors %v; want one run and two skips", ran, errors.Join(errs...))
	}
}

// etcd goes away while a migration runs and comes back within the lease
// TTL: the result, kept in the outbox, is written when etcd answers, the
// runner keeps its lock until then, and the waiting hosts skip the
// migration instead of calling it interrupted.
func TestOutage_MigrationResultWrittenWhenEtcdReturns(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	as := agents(t, []string{etcd.ClientURL}, 3, withTTL(8*time.Second))
	ctx := ctxT(t, 2*time.Minute)
	var runs atomic.Int32
	r := raw(t, etcd.ClientURL)
	queued := make(chan struct{})
	res := migrateAll(ctx, as, testMig, func(string) RunFunc {
		return func(ctx context.Context, token int64) error {
			runs.Add(1)
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if g, err := r.Get(ctx, as[0].keys("prod").migLock(testMig.ID()), clientPrefix()...); err == nil && g.Count == 3 {
					break
				}
			}
			etcd.Stop()
			close(queued)
			return nil // it finished while etcd was down
		}
	})
	<-queued
	time.Sleep(time.Second)
	etcd.Start()
	etcd.WaitHealthy(t, 30*time.Second)
	ran := 0
	for range as {
		x := <-res
		// A waiter may see the outage (its wait ends as one); its pass
		// tries again, as the agent's does.
		for failure.IsOutage(x.err) {
			time.Sleep(500 * time.Millisecond)
			for _, a := range as {
				if a.Host() == x.host {
					x.out, x.err = a.Migrate(ctx, "prod", testMig, func(context.Context, int64) error { runs.Add(1); return nil })
				}
			}
		}
		if x.err != nil {
			t.Fatalf("%s: %v", x.host, x.err)
		}
		if x.out.Ran {
			ran++
		}
	}
	if runs.Load() != 1 || ran != 1 {
		t.Fatalf("runs %d, ran %d", runs.Load(), ran)
	}
	waitFor(t, 10*time.Second, "the kept result written", func() bool {
		st, _, _, err := as[0].readMigration(ctx, as[0].keys("prod").migState(testMig.ID()))
		return err == nil && st != nil && st.Status == MigrationDone
	})
}
