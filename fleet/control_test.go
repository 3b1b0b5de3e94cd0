package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

func TestControl_PauseResumeRetry_SeenAtOnceByWatchers(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 2)
	ctx := ctxT(t, time.Minute)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	ch := as[1].WatchControl(wctx, "prod")
	next := func(what string, ok func(Control) bool) Control {
		t.Helper()
		for {
			select {
			case c := <-ch:
				if ok(c) {
					return c
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no control update: %s", what)
			}
		}
	}
	next("initial", func(c Control) bool { return c.Pause == nil })
	if err := as[0].Pause(ctx, "prod", PauseInfo{By: "ada@ops-1", Reason: "incident 42"}); err != nil {
		t.Fatal(err)
	}
	c := next("pause", func(c Control) bool { return c.Pause != nil })
	if c.Pause.By != "ada@ops-1" || c.Pause.Reason != "incident 42" || c.Pause.At.IsZero() {
		t.Fatalf("pause = %+v", c.Pause)
	}
	if err := as[0].Resume(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	next("resume", func(c Control) bool { return c.Pause == nil })

	// Retry: halts and failed migrations go, the generation grows.
	if err := as[0].HaltRevision(ctx, "prod", "c2", "ops", "bad"); err != nil {
		t.Fatal(err)
	}
	_, err := as[0].Migrate(ctx, "prod", testMig, func(context.Context, int64) error {
		return failure.AsVerdict(errors.New("exited with code 1"))
	})
	if !failure.IsVerdict(err) {
		t.Fatal(err)
	}
	gen, err := as[0].Retry(ctx, "prod", PauseInfo{By: "ada@ops-1"})
	if err != nil {
		t.Fatal(err)
	}
	c = next("retry", func(c Control) bool { return c.Retry == gen })
	if c.RetryBy == nil || c.RetryBy.By != "ada@ops-1" {
		t.Fatalf("retry by = %+v", c.RetryBy)
	}
	if hs, _ := as[0].Halts(ctx, "prod"); len(hs) != 0 {
		t.Fatalf("halts = %v", hs)
	}
	if ms, _ := as[0].Migrations(ctx, "prod"); len(ms) != 0 {
		t.Fatalf("migrations = %v", ms)
	}

	// Rollback --fleet: the head is halted, every host sees the target;
	// resume ends the rollback (the halt stays until a retry).
	if err := as[0].Rollback(ctx, "prod", RollbackInfo{Commit: "c1", Head: "c3", By: "ada@ops-1", Reason: "bad c3"}); err != nil {
		t.Fatal(err)
	}
	c = next("rollback", func(c Control) bool { return c.Rollback != nil })
	if r := c.Rollback; r.Commit != "c1" || r.Head != "c3" || r.By != "ada@ops-1" || r.At.IsZero() {
		t.Fatalf("rollback = %+v", r)
	}
	if hs, _ := as[0].Halts(ctx, "prod"); len(hs) != 1 || hs[0].Revision != "c3" {
		t.Fatalf("halts after rollback = %+v", hs)
	}
	if err := as[0].Resume(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	next("resume ends the rollback", func(c Control) bool { return c.Rollback == nil })
}

// A watch resumed after etcd compacted its revision fails with
// ErrCompacted; the wait returns so the caller lists again, instead of
// hanging or failing.
func TestWatch_CompactedRevisionMeansReadAgain(t *testing.T) {
	etcd := startEmbedded(t)
	a := newAgent(t, []string{etcd.Endpoint}, "web-1")
	ctx := ctxT(t, time.Minute)
	r := raw(t, etcd.Endpoint)
	first, err := r.Put(ctx, "/berth/prod/x", "1")
	if err != nil {
		t.Fatal(err)
	}
	var last *clientv3.PutResponse
	for range 5 {
		if last, err = r.Put(ctx, "/berth/prod/x", "2"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Compact(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	sess, err := a.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.waitChange(ctx, sess, first.Header.Revision, keyOf("/berth/prod/x")); err != nil {
		t.Fatalf("waitChange on a compacted revision: %v, want nil (read again)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("waitChange took %s", d)
	}
}

// A host connected to a member cut off from the majority (the two others
// stopped): its waits end as outages instead of going silent, and nothing
// coordinated starts until the majority is back.
func TestPartition_MemberWithoutQuorum_NothingStarts(t *testing.T) {
	cluster := testenv.StartEtcdCluster(t, 3)
	m0 := cluster.Members[0]
	holder := newAgent(t, cluster.Endpoints(), "web-1", withTTL(3*time.Second))
	cut := newAgent(t, []string{m0.ClientURL}, "web-2", withTTL(3*time.Second))
	publishAll(t, []*agent{holder, cut}, "c1")
	ctx := ctxT(t, 2*time.Minute)
	req := RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}, Live: "c1"}
	held, err := holder.Admit(ctx, "prod", req)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := cut.Admit(ctx, "prod", req) // waits for the slot
		got <- err
	}()
	time.Sleep(500 * time.Millisecond)
	cluster.Members[1].Stop()
	cluster.Members[2].Stop()
	select {
	case err := <-got:
		if !failure.IsOutage(err) {
			t.Fatalf("wait on a member without quorum: %v, want an outage", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the wait did not end on a member without quorum")
	}
	if _, err := cut.ClaimJob(ctx, "prod", "cleanup", time.Now(), JobPolicy{}); !failure.IsOutage(err) {
		t.Fatalf("claim without quorum: %v", err)
	}
	_ = held.Finish(ctx, Succeeded, "") // kept for later
	cluster.Members[1].Start()
	cluster.Members[2].Start()
	cluster.Members[1].WaitHealthy(t, 30*time.Second)
	waitFor(t, 30*time.Second, "the cut-off host admitted once the majority is back", func() bool {
		adm, err := cut.Admit(ctx, "prod", req)
		if err != nil {
			return false
		}
		_ = adm.Finish(ctx, Succeeded, "")
		return true
	})
}
