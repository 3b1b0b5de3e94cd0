package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// slotQueues puts each agent in the slot queue of w, in order.
func slotQueues(ctx context.Context, t *testing.T, as []*agent, w *Wave) ([]*slotQueue, []*slotView) {
	t.Helper()
	var qs []*slotQueue
	var views []*slotView
	for _, a := range as {
		sess, err := a.Session(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := a.keys("prod")
		q := &slotQueue{c: a.Client, k: k, sess: sess, rev: w.Revision, haltKey: k.halt(w.Revision), n: w.MaxParallel,
			qkey: fmt.Sprintf("%s%016x-%d", k.queue(), sess.Lease(), a.token())}
		v, err := q.enter(ctx)
		if err != nil {
			t.Fatal(err)
		}
		qs, views = append(qs, q), append(views, v)
	}
	return qs, views
}

// A slot granted to a queued host before its revision was halted is not
// used once a read shows the halt: the host is refused (held) and the slot
// goes back; the places behind are told as each reaches the head.
func TestSlots_GrantedSlotNotUsedOnceTheHaltShows(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	ctx := ctxT(t, time.Minute)
	w := &Wave{Revision: "c2", MaxParallel: 2}
	qs, views := slotQueues(ctx, t, as, w)
	// web-1 takes a slot and grants the other to web-2, queued behind it.
	if kv, _, err := qs[0].take(ctx, views[0]); err != nil || kv == nil {
		t.Fatalf("take: %v, %v", kv, err)
	}
	if err := as[0].HaltRevision(ctx, "prod", "c2", "web-1", "canary failed"); err != nil {
		t.Fatal(err)
	}
	v, err := qs[1].reread(ctx)
	if err != nil || v.granted == nil || v.halt == nil {
		t.Fatalf("web-2's view: %+v, %v; want its granted slot and the halt", v, err)
	}
	for i, q := range qs[1:] {
		v, err := q.reread(ctx)
		if err != nil {
			t.Fatal(err)
		}
		adm := &Admission{Revision: "c2", Slot: -1, c: q.c, env: "prod", wave: w}
		var halted *HaltedError
		if err := q.await(ctx, adm, v, func(string) {}); !errors.As(err, &halted) || adm.Slot != -1 {
			t.Fatalf("web-%d: %v, slot %d; want it held, no slot", i+2, err, adm.Slot)
		}
	}
	r := raw(t, etcd.Endpoint)
	waitFor(t, 10*time.Second, "the granted slot given back and the queue empty", func() bool {
		return countKeys(t, r, as[0].keys("prod").slots()) == 1 && countKeys(t, r, as[0].keys("prod").queue()) == 0
	})
}

// A host waiting for a rollout's canaries gives up when a newer rollout
// begins (the canaries may never deploy the older revision now), so the
// fleet converges on the newest head instead of waiting forever.
func TestWaves_GateOfASupersededRollout_AsksAgain(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	publishAll(t, as, "c1")
	ctx := ctxT(t, time.Minute)
	p := Policy{Canary: 1, MaxParallel: "3"}
	type result struct {
		a   *agent
		adm *Admission
		err error
	}
	got := make(chan result, 3)
	for _, a := range as {
		go func() {
			adm, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c2", Policy: p, Live: "c1"})
			got <- result{a, adm, err}
		}()
	}
	// The canary is let in; it moves on to c3 without deploying c2.
	first := <-got
	if first.err != nil || !first.adm.Canary {
		t.Fatalf("first admitted: %+v, %v; want the canary", first.adm, first.err)
	}
	_ = first.adm.Finish(ctx, Abandoned, "the head moved")
	select {
	case r := <-got:
		t.Fatalf("%s admitted before the canary went live: %v", r.a.Host(), r.err)
	case <-time.After(500 * time.Millisecond):
	}
	adm, err := first.a.Admit(ctx, "prod", RolloutRequest{Revision: "c3", Live: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	_ = adm.Finish(ctx, Succeeded, "")
	for range 2 {
		select {
		case r := <-got:
			if !errors.Is(r.err, ErrSuperseded) {
				t.Fatalf("%s waiting for c2's canaries when c3 began: %v; want ErrSuperseded", r.a.Host(), r.err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("still waiting for c2's canaries 20 s after c3 began")
		}
	}
}

// A stale host's rollout of an older revision, begun after the newer
// one's, does not hold the newer one's gate shut once its canaries proved
// it: the hosts asking again are let in (chaos-fleet seed 1 found the
// fleet stuck on the older revision with the newer one's canary live).
func TestWaves_CanariesThatProvedARevisionOpenItsGateWhateverBeganSince(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 4)
	publishAll(t, as[:3], "c1") // web-4 shows up later
	ctx := ctxT(t, time.Minute)
	p := Policy{Canary: 1, MaxParallel: "3"}
	var canary *agent
	var rest []*agent
	for _, a := range as[:3] {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		adm, err := a.Admit(wctx, "prod", RolloutRequest{Revision: "c3", Policy: p, Live: "c1"})
		cancel()
		switch {
		case err == nil && adm.Canary:
			canary = a
			defer adm.Finish(ctx, Succeeded, "")
		default:
			rest = append(rest, a)
		}
	}
	if canary == nil {
		t.Fatal("no canary let in on c3")
	}
	// web-4, stale, begins c2's rollout after c3's.
	as[3].Publish("prod", HostState{Live: &Commit{Revision: "c1"}})
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go as[3].Admit(sctx, "prod", RolloutRequest{Revision: "c2", Policy: p, Live: "c1"})
	r := raw(t, etcd.Endpoint)
	waitFor(t, 20*time.Second, "c2's rollout the latest", func() bool {
		g, err := r.Get(ctx, as[0].keys("prod").latest())
		return err == nil && len(g.Kvs) == 1 && strings.Contains(string(g.Kvs[0].Value), `"revision":"c2"`)
	})
	// The canary goes live on c3; the others ask again, as a pass does
	// after an outage, until its host record shows it.
	canary.Publish("prod", HostState{Live: &Commit{Revision: "c3"}})
	for _, a := range rest {
		deadline := time.Now().Add(20 * time.Second)
		for {
			adm, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c3", Policy: p, Live: "c1"})
			if err == nil {
				_ = adm.Finish(ctx, Succeeded, "")
				break
			}
			if !errors.Is(err, ErrSuperseded) || time.Now().After(deadline) {
				t.Fatalf("%s asking again for c3 once its canary is live: %v", a.Host(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
