package fleet

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The status page's read: one transaction gives every host (gone ones
// too), the control, halts, the rollout with its results, the slots and
// the jobs' runs with their hosts.
func TestOverview_OneReadHasEverythingThePageShows(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	as := agents(t, eps, 3)
	publishAll(t, as, "c1")
	ctx := ctxT(t, time.Minute)
	// c2: the canary fails, which halts it fleet-wide.
	p := Policy{Canary: 1, MaxParallel: "1"}
	type result struct {
		adm *Admission
		err error
	}
	results := make(chan result, len(as))
	for _, a := range as {
		go func() {
			adm, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c2", Policy: p, Live: "c1"})
			results <- result{adm, err}
		}()
	}
	first := <-results // the canary: the others wait for it
	if first.err != nil {
		t.Fatal(first.err)
	}
	if err := first.adm.Finish(ctx, Failed, "web never healthy"); err != nil {
		t.Fatal(err)
	}
	for range len(as) - 1 {
		if r := <-results; !errors.As(r.err, new(*HaltedError)) {
			t.Fatalf("admit after the halt: %v", r.err)
		}
	}
	if err := as[0].Pause(ctx, "prod", PauseInfo{By: "ops", Reason: "freeze"}); err != nil {
		t.Fatal(err)
	}
	claim, err := as[2].ClaimJob(ctx, "prod", "nightly", time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC), JobPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.Finish(ctx, JobResult{Status: JobSucceeded, Started: time.Now(), Ended: time.Now()}); err != nil {
		t.Fatal(err)
	}
	as[1].Publish("stage", HostState{Live: &Commit{Revision: "s1"}})
	as[2].crash() // gone once its lease expires; still listed from last_seen
	waitFor(t, 20*time.Second, "web-3 gone and stage published", func() bool {
		os, err := as[0].Overview(ctx, []string{"prod", "stage"})
		return err == nil && len(os) == 2 && len(os[0].Hosts) == 3 && !os[0].Hosts[2].Alive && len(os[1].Hosts) == 1
	})
	os, err := as[0].Overview(ctx, []string{"prod", "stage"})
	if err != nil {
		t.Fatal(err)
	}
	o := os[0]
	if o.Control.Pause == nil || o.Control.Pause.Reason != "freeze" {
		t.Errorf("pause: %+v", o.Control.Pause)
	}
	if len(o.Halts) != 1 || o.Halts[0].Revision != "c2" {
		t.Errorf("halts: %+v", o.Halts)
	}
	if len(o.Rollouts) != 1 || o.Rollouts[0].Revision != "c2" || len(o.Rollouts[0].Canaries) != 1 ||
		len(o.Rollouts[0].Done) != 1 || o.Rollouts[0].Done[0].OK || o.Rollouts[0].Done[0].Reason != "web never healthy" {
		t.Errorf("rollouts: %+v", o.Rollouts)
	}
	if len(o.Jobs) != 1 || o.Jobs[0].Job != "nightly" || len(o.Jobs[0].Runs) != 1 || o.Jobs[0].Runs[0].Host != "web-3" || o.Jobs[0].Runs[0].Status != JobSucceeded {
		t.Errorf("jobs: %+v", o.Jobs)
	}
	envs, err := as[0].Envs(ctx)
	if err != nil || len(envs) != 2 || envs[0] != "prod" || envs[1] != "stage" {
		t.Errorf("Envs = %v, %v", envs, err)
	}
	r1, err := as[0].Revision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := as[0].Resume(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	if r2, _ := as[0].Revision(context.Background()); r2 <= r1 {
		t.Errorf("the revision did not move with a write: %d then %d", r1, r2)
	}
	// Read again and again, decoding only what changed: the same
	// overview, and a change shows.
	cached := &Overviews{Client: as[0].Client}
	for i := range 2 {
		again, err := cached.Overview(ctx, []string{"prod", "stage"})
		if err != nil {
			t.Fatal(err)
		}
		if a := again[0]; a.Control.Pause != nil || len(a.Hosts) != 3 || len(a.Rollouts) != 1 || len(a.Jobs) != 1 || a.Rollouts[0].seq == 0 {
			t.Errorf("read %d through the cache: pause %v, %d hosts, %d rollouts, %d jobs", i, a.Control.Pause, len(a.Hosts), len(a.Rollouts), len(a.Jobs))
		}
	}
	if err := as[0].Pause(ctx, "prod", PauseInfo{By: "ops", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	if again, err := cached.Overview(ctx, []string{"prod"}); err != nil || again[0].Control.Pause == nil || again[0].Control.Pause.Reason != "again" {
		t.Errorf("a change through the cache: %v", err)
	}
}
