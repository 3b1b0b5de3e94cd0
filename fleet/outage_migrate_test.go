package fleet

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// A migration that finishes while etcd is down for three lease TTLs: when
// etcd returns (restoring every lease with a fresh TTL) the runner keeps
// its lease alive again and writes its result before anyone can read its
// lock as abandoned. The waiting host skips the migration: nobody marks it
// interrupted, nothing halts, and an idempotent one is not run again.
func TestOutage_MigrationFinishedDuringAnOutageLongerThanTheTTL_ResultLandsFirst(t *testing.T) {
	for _, idem := range []bool{false, true} {
		t.Run(map[bool]string{false: "not idempotent", true: "idempotent"}[idem], func(t *testing.T) {
			etcd := testenv.StartEtcd(t)
			const ttl = 2 * time.Second
			as := agents(t, []string{etcd.ClientURL}, 2, withTTL(ttl))
			ctx := ctxT(t, 2*time.Minute)
			m := testMig
			m.Idempotent = idem
			var runs atomic.Int32
			finish := make(chan struct{})
			res := make(chan migResult, 2)
			go func() {
				out, err := as[0].Migrate(ctx, "prod", m, func(context.Context, int64) error { runs.Add(1); <-finish; return nil })
				res <- migResult{"web-1", out, err}
			}()
			waitFor(t, 10*time.Second, "web-1 running", func() bool { return runs.Load() == 1 })
			go func() {
				for {
					out, err := as[1].Migrate(ctx, "prod", m, func(context.Context, int64) error { runs.Add(1); return nil })
					if failure.IsOutage(err) && ctx.Err() == nil { // its pass tries again, as the agent's does
						time.Sleep(200 * time.Millisecond)
						continue
					}
					res <- migResult{"web-2", out, err}
					return
				}
			}()
			waitFor(t, 10*time.Second, "web-2 queued for the lock", func() bool {
				g, err := raw(t, etcd.ClientURL).Get(ctx, as[0].keys("prod").migLock(m.ID()), clientPrefix()...)
				return err == nil && g.Count == 2
			})
			etcd.Stop()
			close(finish) // the run ends while etcd is down
			time.Sleep(3 * ttl)
			etcd.Start()
			etcd.WaitHealthy(t, 30*time.Second)
			for range 2 {
				x := <-res
				if x.err != nil {
					t.Fatalf("%s: %v", x.host, x.err)
				}
				if x.out.Ran != (x.host == "web-1") {
					t.Errorf("%s: ran %t", x.host, x.out.Ran)
				}
			}
			if n := runs.Load(); n != 1 {
				t.Fatalf("the migration ran %d times", n)
			}
			st := migState(t, as[1].Client, m)
			if st.Status != MigrationDone || st.Host != "web-1" {
				t.Fatalf("state %+v", st)
			}
			if hs, err := as[1].Halts(ctx, "prod"); err != nil || len(hs) != 0 {
				t.Fatalf("halts %+v, %v", hs, err)
			}
		})
	}
}

// A runner cut off mid-run (its lease gone) is marked interrupted by the
// host that then takes the lock: the revision halts, naming that run as
// the cause. When the runner's result arrives after all, written under its
// own token, it supersedes the mark and lifts the halt in the same write,
// and the retry generation grows with the reason, so every host forgets
// what the halt made it keep.
func TestMigrate_LateResultLiftsTheHaltItsInterruptedMarkCaused(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 2)
	ctx := ctxT(t, time.Minute)
	m := testMig
	m.Revision = "c2"
	before, err := as[1].Control(ctx, "prod")
	if err != nil {
		t.Fatal(err)
	}
	var cut atomic.Bool
	setFault(as[0], func(what string, committed bool) error {
		if cut.Load() && !committed {
			return context.DeadlineExceeded // web-1 cannot reach etcd
		}
		return nil
	})
	var token atomic.Int64
	finish := make(chan struct{})
	runner := make(chan error, 1)
	go func() {
		_, err := as[0].Migrate(ctx, "prod", m, func(ctx context.Context, tok int64) error {
			s, _ := as[0].Session(ctx)
			cut.Store(true)
			if _, err := raw(t, as[0].cfg.Etcd.Endpoints...).Revoke(ctx, s.Lease()); err != nil { // the lease ends
				t.Error(err)
			}
			token.Store(tok)
			<-finish
			return nil
		})
		runner <- err
	}()
	waitFor(t, 10*time.Second, "web-1 running", func() bool { return token.Load() != 0 })
	waitFor(t, 20*time.Second, "web-2 to find the run interrupted", func() bool {
		_, err := as[1].Migrate(ctx, "prod", m, func(context.Context, int64) error {
			t.Error("web-2 ran a migration that is not idempotent")
			return nil
		})
		var me *MigrationError
		return errors.As(err, &me) && me.State.Status == MigrationInterrupted
	})
	hs, err := as[1].Halts(ctx, "prod")
	if err != nil || len(hs) != 1 || hs[0].Revision != "c2" || hs[0].Token != token.Load() || hs[0].Migration != m.ID() {
		t.Fatalf("halts %+v, %v; want c2 halted by the run with token %d", hs, err, token.Load())
	}
	close(finish)
	if err := <-runner; err != nil {
		t.Fatalf("runner: %v", err)
	}
	cut.Store(false)
	as[0].kick()
	waitFor(t, 20*time.Second, "the late result written", func() bool {
		st := migState(t, as[1].Client, m)
		return st.Status == MigrationDone && st.Token == token.Load()
	})
	if hs, err := as[1].Halts(ctx, "prod"); err != nil || len(hs) != 0 {
		t.Fatalf("halts after the late result: %+v, %v", hs, err)
	}
	ctl, err := as[1].Control(ctx, "prod")
	if err != nil || ctl.Retry <= before.Retry || ctl.RetryBy == nil || !strings.Contains(ctl.RetryBy.Reason, "late result") {
		t.Fatalf("control after the late result: %+v, %v; want the retry generation grown, with the reason", ctl, err)
	}
}

// A session that comes back to a migration while its own earlier result
// (and its lock's release) still waits in the outbox does not read its
// own "running" record as a runner gone: it writes the result first, or
// waits for etcd, and never marks its own run interrupted.
func TestMigrate_OwnResultStillInTheOutbox_NeverMarkedInterrupted(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	ctx := ctxT(t, time.Minute)
	var cut atomic.Bool
	setFault(a, func(what string, committed bool) error {
		if cut.Load() && !committed && (what == "write migration result" || what == "release lock") {
			return context.DeadlineExceeded
		}
		return nil
	})
	var runs atomic.Int32
	run := func(context.Context, int64) error { runs.Add(1); cut.Store(true); return nil }
	out, err := a.Migrate(ctx, "prod", testMig, run)
	if err != nil || !out.Ran || a.Pending() == 0 {
		t.Fatalf("first: %+v, %v, %d kept; want it run, its result kept", out, err, a.Pending())
	}
	// Back to the same migration, the result still kept.
	_, err = a.Migrate(ctx, "prod", testMig, run)
	var me *MigrationError
	if errors.As(err, &me) || !failure.IsOutage(err) {
		t.Fatalf("again with the result kept: %v; want to wait for etcd", err)
	}
	if st := migState(t, a.Client, testMig); st.Status != MigrationRunning {
		t.Fatalf("state %+v; want still running", st)
	}
	cut.Store(false)
	out, err = a.Migrate(ctx, "prod", testMig, run)
	if err != nil || out.Ran || runs.Load() != 1 {
		t.Fatalf("once the result could be written: %+v, %v, runs %d", out, err, runs.Load())
	}
	if st := migState(t, a.Client, testMig); st.Status != MigrationDone {
		t.Fatalf("state %+v", st)
	}
}
