package fleet

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestWaves_JoiningHostDeploysGoodRevisionThenRespectsTheSlots(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	as := agents(t, eps, 3)
	publishAll(t, as, "")
	ctx := ctxT(t, 2*time.Minute)
	// c1 rolls out everywhere: it becomes the good revision.
	if _, errs := rollout(ctx, t, as, "c1", "", Policy{}, 0, nil); len(errs) > 0 {
		t.Fatal(errs)
	}
	if g, _ := as[0].GoodRevision(ctx, "prod"); g == nil || g.Revision != "c1" {
		t.Fatalf("good = %+v", g)
	}
	publishAll(t, as, "c1")
	// c2 is mid-rollout, one host at a time: web-1 holds the slot.
	c2 := RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}, Live: "c1"}
	held, err := as[0].Admit(ctx, "prod", c2)
	if err != nil || held.Slot != 0 {
		t.Fatalf("web-1: %+v, %v", held, err)
	}
	// A new host joins: it deploys c1, not the half-rolled-out c2, and it
	// takes a slot like everyone else: it waits while web-1 holds the only
	// one.
	joiner := newAgent(t, eps, "web-4")
	joiner.Publish("prod", HostState{})
	r := raw(t, eps...)
	adm := admitAsync(ctx, t, joiner, RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}})
	notAdmitted(t, r, joiner, adm, "the joiner, while web-1 held the only slot")
	_ = held.Finish(ctx, Succeeded, "")
	if a := <-adm; a == nil || !a.Joining || a.Revision != "c1" || a.Slot != 0 {
		t.Fatalf("joiner: %+v; want to deploy c1 first, in slot 0", a)
	} else {
		_ = a.Finish(ctx, Succeeded, "")
	}
	// Live on c1, it then waits for a slot like everyone.
	held, err = as[1].Admit(ctx, "prod", c2)
	if err != nil || held.Slot != 0 {
		t.Fatalf("web-2: %+v, %v", held, err)
	}
	var waiting []string
	var wmu sync.Mutex
	req := c2
	req.Waiting = func(s string) { wmu.Lock(); waiting = append(waiting, s); wmu.Unlock() }
	adm = admitAsync(ctx, t, joiner, req)
	notAdmitted(t, r, joiner, adm, "the joiner live on c1, while web-2 held the only slot")
	_ = held.Finish(ctx, Succeeded, "")
	if a := <-adm; a == nil || a.Slot != 0 || a.Revision != "c2" {
		t.Fatalf("joiner after the slot freed: %+v", a)
	} else {
		_ = a.Finish(ctx, Succeeded, "")
	}
	wmu.Lock()
	if len(waiting) < 2 || !strings.HasPrefix(waiting[0], "waiting for a deploy slot") || waiting[len(waiting)-1] != "" {
		t.Errorf("what the joiner said it waited for: %q", waiting)
	}
	wmu.Unlock()

	// During a halt, a joining host deploys the good revision too.
	if err := as[1].HaltRevision(ctx, "prod", "c2", "ops", "bad release"); err != nil {
		t.Fatal(err)
	}
	late := newAgent(t, eps, "web-5")
	if a, err := late.Admit(ctx, "prod", RolloutRequest{Revision: "c2"}); err != nil || !a.Joining || a.Revision != "c1" || a.Slot != 0 {
		t.Fatalf("joiner during a halt: %+v, %v", a, err)
	}
}

// admitAsync asks for an admission in the background.
func admitAsync(ctx context.Context, t *testing.T, a *agent, req RolloutRequest) <-chan *Admission {
	got := make(chan *Admission, 1)
	go func() {
		adm, err := a.Admit(ctx, "prod", req)
		if err != nil {
			t.Error(err)
		}
		got <- adm
	}()
	return got
}

// notAdmitted waits until a is queued for a slot, and checks that it is
// not let in meanwhile.
func notAdmitted(t *testing.T, r *clientv3.Client, a *agent, adm <-chan *Admission, who string) {
	t.Helper()
	waitFor(t, 10*time.Second, who+" queued for the slot", func() bool {
		g, err := r.Get(context.Background(), a.keys("prod").queue(), clientPrefix()...)
		return err == nil && g.Count == 1
	})
	select {
	case got := <-adm:
		t.Fatalf("%s was admitted: %+v", who, got)
	case <-time.After(500 * time.Millisecond):
	}
}
