package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func withKeep(rollouts, migrations int, jobGrace time.Duration) agentOpt {
	return func(_ *Config, o *Options) {
		o.KeepRollouts, o.KeepMigrations, o.RemovedJobGrace = rollouts, migrations, jobGrace
	}
}

// countKeys counts the env's keys under a prefix.
func countKeys(t *testing.T, r *clientv3.Client, pfx string) int64 {
	t.Helper()
	g, err := r.Get(context.Background(), pfx, clientPrefix()...)
	if err != nil {
		t.Fatal(err)
	}
	return g.Count
}

// etcd keeps a window: the newest rollouts (each host's result in them),
// the halts of revisions in it, the newest migrations by use (one a kept
// revision still runs is kept however old); the rest is pruned as new
// revisions roll out, so twelve revisions leave what three would.
func TestPrune_RolloutsHaltsAndMigrationsKeepABoundedWindow(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3, withKeep(3, 2, 0))
	publishAll(t, as, "c0")
	ctx := ctxT(t, 2*time.Minute)
	r := raw(t, etcd.Endpoint)
	k := as[0].keys("prod")
	base := Migration{Service: "schema", Image: "app@sha256:base", Command: []string{"migrate"}}
	live := "c0"
	for i := 1; i <= 12; i++ {
		rev := fmt.Sprintf("c%d", i)
		if i%4 == 0 { // halted: a canary failure
			if err := as[0].HaltRevision(ctx, "prod", rev, "ops", "bad"); err != nil {
				t.Fatal(err)
			}
		}
		_, errs := rollout(ctx, t, as, rev, live, Policy{Canary: 1, MaxParallel: "1"}, 0, nil)
		if i%4 != 0 {
			if len(errs) > 0 {
				t.Fatalf("%s: %v", rev, errs)
			}
			live = rev
		}
		// Each revision runs a migration of its own, and the base one
		// (done long ago) again.
		for _, m := range []Migration{{Service: "data", Image: "app@sha256:" + rev, Command: []string{"migrate"}, Revision: rev}, base} {
			m.Revision = rev
			if _, err := as[i%3].Migrate(ctx, "prod", m, func(context.Context, int64) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Three attempts: each its record, three results, promoted.
	if n := countKeys(t, r, k.rollouts()); n > 3*5 {
		t.Fatalf("%d keys under rollout/, want at most 15 (3 attempts kept)", n)
	}
	for _, old := range []string{"c1", "c8"} {
		if n := countKeys(t, r, k.rollout(attemptID(old, 0))); n != 0 {
			t.Errorf("%s's attempt: %d keys left", old, n)
		}
	}
	hs, err := as[0].Halts(ctx, "prod")
	if err != nil || len(hs) != 1 || hs[0].Revision != "c12" {
		t.Fatalf("halts %+v, %v; want only c12's (c4 and c8 are older than the window)", hs, err)
	}
	// Two kept when the last rollout started, and the last revision's own.
	ms, err := as[0].Migrations(ctx, "prod")
	if err != nil || len(ms) != 3 {
		t.Fatalf("migrations %+v, %v; want 3", ms, err)
	}
	found := false
	for _, m := range ms {
		found = found || m.Service == "schema"
	}
	if !found {
		t.Fatalf("migrations %+v: the base migration, used by every revision, was pruned", ms)
	}
}

// A rollout is one attempt of one revision: `berth rollback --fleet` to a
// revision rolled out before goes canary first again, whatever the old
// attempt's promoted gate and results say.
func TestRollback_ToARevisionRolledOutBefore_CanaryFirstAgain(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	publishAll(t, as, "c0")
	ctx := ctxT(t, 2*time.Minute)
	p := Policy{Canary: 1, MaxParallel: "3"}
	for _, rc := range [][2]string{{"c1", "c0"}, {"c2", "c1"}} {
		if _, errs := rollout(ctx, t, as, rc[0], rc[1], p, 0, nil); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	publishAll(t, as, "c2")
	old, err := as[0].Wave(ctx, "prod", "c1")
	if err != nil || old == nil {
		t.Fatalf("c1's first attempt: %+v, %v", old, err)
	}
	if err := as[0].Rollback(ctx, "prod", RollbackInfo{Commit: "c1", Head: "c2", By: "ops"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	waiting := map[string]string{}
	for _, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			adm, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c1", Policy: p, Live: "c2",
				Waiting: func(s string) {
					mu.Lock()
					if strings.HasPrefix(s, "waiting for canaries") {
						waiting[a.Host()] = s
					}
					mu.Unlock()
				}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, fmt.Sprintf("%s canary=%t", a.Host(), adm.Canary))
			mu.Unlock()
			time.Sleep(200 * time.Millisecond)
			_ = adm.Finish(ctx, Succeeded, "")
		}()
	}
	wg.Wait()
	w, err := as[0].Wave(ctx, "prod", "c1")
	if err != nil || w == nil || w.Attempt == old.Attempt {
		t.Fatalf("the rollback's attempt %+v (%v), the first %s: want a new attempt", w, err, old.Attempt)
	}
	if len(order) != 3 || !strings.HasSuffix(order[0], "canary=true") {
		t.Fatalf("admitted in order %v; want the new attempt's canary first", order)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waiting) != 2 {
		t.Fatalf("hosts that waited for the canary: %v; want the two others", waiting)
	}
}

// The records of a job no host defines any more are forgotten once its
// last claim is older than the grace (so no host can still claim one of
// its times); a job still defined keeps its records.
func TestPrune_RemovedJobForgottenAfterItsGrace(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1", withKeep(0, 0, 2*time.Second))
	ctx := ctxT(t, time.Minute)
	r := raw(t, etcd.Endpoint)
	k := a.keys("prod")
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	for _, job := range []string{"backup", "old-report"} {
		c, err := a.ClaimJob(ctx, "prod", job, t0, JobPolicy{})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Finish(ctx, JobResult{Status: JobSucceeded})
	}
	if err := a.ForgetJobs(ctx, "prod", []string{"backup"}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, r, k.job("old-report")+"/"); n == 0 {
		t.Fatal("a removed job forgotten within its grace")
	}
	time.Sleep(2 * time.Second)
	if err := a.ForgetJobs(ctx, "prod", []string{"backup"}); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, r, k.job("old-report")+"/"); n != 0 {
		t.Fatalf("%d keys of the removed job left after its grace", n)
	}
	if n := countKeys(t, r, k.job("backup")+"/"); n == 0 {
		t.Fatal("a defined job's records were forgotten")
	}
	if _, err := a.ClaimJob(ctx, "prod", "backup", t0, JobPolicy{}); !errors.Is(err, ErrClaimed) {
		t.Fatalf("claiming backup's time again: %v", err)
	}
}
