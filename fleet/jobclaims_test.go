package fleet

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// setFault makes a's calls fail as f says (see Client.fault).
func setFault(a *agent, f func(what string, committed bool) error) { a.fault.Store(&f) }

// A claim whose commit was ambiguous — etcd applied it, its reply was
// lost — is found again by its nonce and adopted: the host runs the time
// with the claim's token, and the `active` mark is the run's.
func TestJobs_AmbiguousClaim_AdoptedByItsHost(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	other := newAgent(t, []string{etcd.Endpoint}, "web-2")
	ctx := ctxT(t, time.Minute)
	var lost atomic.Int32
	setFault(a, func(what string, committed bool) error {
		if what == "claim job" && committed && lost.Add(1) == 1 {
			return context.DeadlineExceeded // applied, the reply lost
		}
		return nil
	})
	tm := time.Now().Add(-time.Second).Truncate(time.Second)
	claim, err := a.ClaimJob(ctx, "prod", "backup", tm, JobPolicy{})
	if err != nil {
		t.Fatalf("a claim whose reply was lost: %v; want it adopted", err)
	}
	recs, err := other.JobRuns(ctx, "prod", "backup", 0)
	if err != nil || len(recs) != 1 || recs[0].Token != claim.Token || recs[0].Host != "web-1" || recs[0].Status != JobRunning {
		t.Fatalf("records %+v (%v); want web-1's claim, token %d", recs, err, claim.Token)
	}
	if _, err := other.ClaimJob(ctx, "prod", "backup", tm, JobPolicy{}); !errors.Is(err, ErrClaimed) {
		t.Fatalf("web-2 claiming the same time: %v", err)
	}
	if err := claim.Finish(ctx, JobResult{Status: JobSucceeded}); err != nil {
		t.Fatal(err)
	}
	act, err := other.JobActiveRuns(ctx, "prod", "backup")
	recs, _ = other.JobRuns(ctx, "prod", "backup", 0)
	if err != nil || len(act) != 0 || len(recs) != 1 || recs[0].Status != JobSucceeded || recs[0].LeaseLost {
		t.Fatalf("after the run: active %+v (%v), records %+v", act, err, recs)
	}
}

// An ambiguous claim its scheduler gives up on (etcd stayed away, the
// starting deadline passed) does not stay "running": the host settles it
// as skipped and frees its `active` mark, so `concurrency: forbid` skips
// nothing on its account.
func TestJobs_AmbiguousClaimGivenUp_SettledAsSkipped(t *testing.T) {
	defer func(d time.Duration) { claimSettleAfter = d }(claimSettleAfter)
	claimSettleAfter = time.Second
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	other := newAgent(t, []string{etcd.Endpoint}, "web-2")
	ctx := ctxT(t, time.Minute)
	var down atomic.Bool
	setFault(a, func(what string, committed bool) error {
		switch {
		case what == "claim job" && committed:
			down.Store(true) // applied; then etcd goes away for this host
			return context.DeadlineExceeded
		case down.Load() && what == "read job claim":
			return context.DeadlineExceeded
		}
		return nil
	})
	tm := time.Now().Add(-time.Second).Truncate(time.Second)
	if _, err := a.ClaimJob(ctx, "prod", "backup", tm, JobPolicy{}); err == nil {
		t.Fatal("claimed, with etcd gone after the claim")
	}
	if act, _ := other.JobActiveRuns(ctx, "prod", "backup"); len(act) != 1 {
		t.Fatalf("active right after the lost reply: %+v; want web-1's mark", act)
	}
	down.Store(false) // etcd is back; nobody asks for that time again
	a.kick()
	waitFor(t, 20*time.Second, "the ambiguous claim settled", func() bool {
		recs, err := other.JobRuns(ctx, "prod", "backup", 0)
		return err == nil && len(recs) == 1 && recs[0].Status == "skipped"
	})
	if act, _ := other.JobActiveRuns(ctx, "prod", "backup"); len(act) != 0 {
		t.Fatalf("active after the claim was settled: %+v", act)
	}
}

// An ambiguous claim its scheduler gave up on is settled as soon as the
// host claims a later time of the same job, so its active mark never makes
// `concurrency: forbid` skip that later time on another host.
func TestJobs_AmbiguousClaimSettledByTheNextClaim(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	other := newAgent(t, []string{etcd.Endpoint}, "web-2")
	ctx := ctxT(t, time.Minute)
	var down atomic.Bool
	var claims atomic.Int32
	setFault(a, func(what string, committed bool) error {
		switch {
		case what == "claim job" && committed && claims.Add(1) == 1:
			down.Store(true) // applied; then etcd goes away for this host
			return context.DeadlineExceeded
		case down.Load() && what == "read job claim":
			return context.DeadlineExceeded
		}
		return nil
	})
	t1 := time.Now().Add(-time.Minute).Truncate(time.Second)
	if _, err := a.ClaimJob(ctx, "prod", "backup", t1, JobPolicy{}); err == nil {
		t.Fatal("claimed, with etcd gone after the claim")
	}
	down.Store(false)
	// The scheduler moved on: web-2 runs the next time and checks forbid.
	c, err := a.ClaimJob(ctx, "prod", "backup", t1.Add(time.Second), JobPolicy{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Finish(ctx, JobResult{Status: JobSucceeded})
	act, err := other.JobActiveRuns(ctx, "prod", "backup")
	if err != nil || len(act) != 1 || !act[0].Scheduled.Equal(t1.Add(time.Second)) {
		t.Fatalf("active runs %+v, %v; want only the later time's", act, err)
	}
	recs, _ := other.JobRuns(ctx, "prod", "backup", 0)
	if len(recs) != 2 || recs[1].Status != "skipped" {
		t.Fatalf("records %+v; want the ambiguous one skipped", recs)
	}
}
