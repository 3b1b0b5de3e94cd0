package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/internal/failure"
)

// span is one host's time inside a deploy.
type span struct {
	host        string
	enter, exit time.Time
}

// maxOverlap is the largest number of spans open at one instant.
func maxOverlap(spans []span) int {
	type ev struct {
		at time.Time
		d  int
	}
	var evs []ev
	for _, s := range spans {
		evs = append(evs, ev{s.enter, +1}, ev{s.exit, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].at.Equal(evs[j].at) {
			return evs[i].d < evs[j].d // an exit before an enter at the same instant
		}
		return evs[i].at.Before(evs[j].at)
	})
	n, best := 0, 0
	for _, e := range evs {
		n += e.d
		best = max(best, n)
	}
	return best
}

// publishAll makes every agent publish itself live on rev, and waits
// until all are listed.
func publishAll(t *testing.T, as []*agent, rev string) {
	t.Helper()
	for _, a := range as {
		a.Publish("prod", HostState{Live: &Commit{Revision: rev}})
	}
	waitFor(t, 20*time.Second, "every host listed", func() bool {
		hs, err := as[0].List(context.Background(), "prod")
		alive := 0
		for _, h := range hs {
			if h.Alive {
				alive++
			}
		}
		return err == nil && alive == len(as)
	})
}

// rollout has every agent deploy rev (a deploy is hold long) and returns
// the spans; outcome decides each host's outcome.
func rollout(ctx context.Context, t *testing.T, as []*agent, rev, live string, p Policy, hold time.Duration,
	outcome func(host string) Outcome) ([]span, map[string]error) {
	return rolloutWith(ctx, t, as, rev, live, p, func(string) { time.Sleep(hold) }, outcome)
}

// rolloutWith is rollout with each host's deploy a call of deploy. An
// Admit that meets an outage (a call timing out on a loaded machine) is
// asked again, as the next pass would.
func rolloutWith(ctx context.Context, t *testing.T, as []*agent, rev, live string, p Policy, deploy func(host string),
	outcome func(host string) Outcome) ([]span, map[string]error) {
	var mu sync.Mutex
	var spans []span
	errs := map[string]error{}
	var wg sync.WaitGroup
	for _, a := range as {
		wg.Add(1)
		go func() {
			defer wg.Done()
			adm, err := a.Admit(ctx, "prod", RolloutRequest{Revision: rev, Policy: p, Live: live})
			for err != nil && failure.IsOutage(err) && !errors.Is(err, ErrSuperseded) && ctx.Err() == nil {
				t.Logf("%s: %v; asking again", a.Host(), err)
				adm, err = a.Admit(ctx, "prod", RolloutRequest{Revision: rev, Policy: p, Live: live})
			}
			if err != nil {
				mu.Lock()
				errs[a.Host()] = err
				mu.Unlock()
				return
			}
			s := span{host: a.Host(), enter: time.Now()}
			deploy(a.Host())
			s.exit = time.Now()
			mu.Lock()
			spans = append(spans, s)
			mu.Unlock()
			o := Succeeded
			if outcome != nil {
				o = outcome(a.Host())
			}
			if err := adm.Finish(ctx, o, "deploy "+fmt.Sprint(o)); err != nil {
				t.Errorf("%s: finish: %v", a.Host(), err)
			}
		}()
	}
	wg.Wait()
	return spans, errs
}

// 20 hosts, max_parallel 25%: never more than 5 deploy at once, and 5 do.
// Robust on a loaded machine without checking less: leases long enough
// that no slot is lost to a slow keepalive (a lost slot may let
// max_parallel+1 in, by design), calls that time out asked again, and
// the first deploys held until five are in (or long enough to show that
// a fifth never came).
func TestWaves_MaxParallel25PercentOf20_NeverMoreThan5(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 20, withTTL(10*time.Second), withTimeout(5*time.Second))
	publishAll(t, as, "c1")
	ctx := ctxT(t, 3*time.Minute)
	var mu sync.Mutex
	in := 0
	full := make(chan struct{})
	deploy := func(string) {
		mu.Lock()
		if in++; in == 5 {
			select {
			case <-full:
			default:
				close(full)
			}
		}
		mu.Unlock()
		select {
		case <-full:
		case <-time.After(20 * time.Second):
		}
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		in--
		mu.Unlock()
	}
	spans, errs := rolloutWith(ctx, t, as, "c2", "c1", Policy{MaxParallel: "25%"}, deploy, nil)
	if len(errs) > 0 || len(spans) != 20 {
		t.Fatalf("errors %v, %d deploys", errs, len(spans))
	}
	if got := maxOverlap(spans); got != 5 {
		t.Fatalf("at most %d hosts deployed at once; want exactly 5 (never more, and the slots used)", got)
	}
	w, err := as[0].Wave(ctx, "prod", "c2")
	if err != nil || w.MaxParallel != 5 || len(w.Known) != 20 {
		t.Fatalf("wave record = %+v, %v", w, err)
	}
	if g, err := as[0].GoodRevision(ctx, "prod"); err != nil || g == nil || g.Revision != "c2" {
		t.Fatalf("good revision = %+v, %v; want c2 once every host is on it", g, err)
	}
}

func TestWaves_CanaryFirstThenOthersAfterPause(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 5)
	publishAll(t, as, "c1")
	ctx := ctxT(t, 2*time.Minute)
	const pause = 2 * time.Second
	spans, errs := rollout(ctx, t, as, "c2", "c1", Policy{Canary: 1, MaxParallel: "2", Pause: pause}, 200*time.Millisecond, nil)
	if len(errs) > 0 || len(spans) != 5 {
		t.Fatalf("errors %v, %d deploys", errs, len(spans))
	}
	w, _ := as[0].Wave(ctx, "prod", "c2")
	if len(w.Canaries) != 1 {
		t.Fatalf("canaries = %v", w.Canaries)
	}
	var canary span
	for _, s := range spans {
		if s.host == w.Canaries[0] {
			canary = s
		}
	}
	for _, s := range spans {
		if s.host != canary.host && s.enter.Before(canary.exit.Add(pause)) {
			t.Errorf("%s entered %s after the canary finished; want at least the pause (%s)", s.host, s.enter.Sub(canary.exit), pause)
		}
	}
	if got := maxOverlap(spans); got > 2 {
		t.Errorf("max overlap %d > max_parallel 2", got)
	}
}

func TestWaves_CanaryFails_OnlyTheCanaryChanges_HaltSurvivesRestart(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	as := agents(t, eps, 3)
	publishAll(t, as, "c1")
	ctx := ctxT(t, 2*time.Minute)
	spans, errs := rollout(ctx, t, as, "c2", "c1", Policy{Canary: 1, MaxParallel: "1"}, 100*time.Millisecond,
		func(string) Outcome { return Failed })
	w, _ := as[0].Wave(ctx, "prod", "c2")
	if len(spans) != 1 || spans[0].host != w.Canaries[0] {
		t.Fatalf("deploys %v; want only the canary %v", spans, w.Canaries)
	}
	for h, err := range errs {
		var he *HaltedError
		if !errors.As(err, &he) || !failure.IsVerdict(err) || he.Halt.Host != w.Canaries[0] {
			t.Fatalf("%s: %v, want the halt (a verdict) naming the canary", h, err)
		}
	}
	// The halt is a permanent key: it survives etcd restarting, and the
	// agents restarting.
	for _, a := range as {
		a.close()
	}
	etcd.Stop()
	etcd.Start()
	as = agents(t, eps, 3)
	publishAll(t, as, "c1")
	for _, a := range as {
		if a.Host() == w.Canaries[0] {
			continue
		}
		if _, err := a.Admit(ctx, "prod", RolloutRequest{Revision: "c2", Live: "c1"}); !errors.As(err, new(*HaltedError)) {
			t.Fatalf("%s after restart: %v, want halted", a.Host(), err)
		}
	}
	// A new commit is not halted; `berth retry` clears the old halt.
	adm, err := as[0].Admit(ctx, "prod", RolloutRequest{Revision: "c3", Live: "c1"})
	if err != nil {
		t.Fatalf("new commit: %v", err)
	}
	_ = adm.Finish(ctx, Abandoned, "")
	if _, err := as[1].Retry(ctx, "prod", PauseInfo{By: "ops", Reason: "fixed the database"}); err != nil {
		t.Fatal(err)
	}
	if hs, _ := as[0].Halts(ctx, "prod"); len(hs) != 0 {
		t.Fatalf("halts after retry: %v", hs)
	}
}

func TestWaves_GoneCanaryIsReplaced(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	publishAll(t, as, "c1")
	ctx := ctxT(t, 2*time.Minute)
	// Fix the record first, then lose the canary before it deploys.
	s0, _ := as[0].Session(ctx)
	w, err := as[0].wave(ctx, "prod", s0, RolloutRequest{Revision: "c2", Policy: Policy{Canary: 1}}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var rest []*agent
	for _, a := range as {
		if a.Host() == w.Canaries[0] {
			a.crash()
		} else {
			rest = append(rest, a)
		}
	}
	spans, errs := rollout(ctx, t, rest, "c2", "c1", Policy{Canary: 1}, 100*time.Millisecond, nil)
	if len(errs) > 0 || len(spans) != 2 {
		t.Fatalf("errors %v, deploys %v", errs, spans)
	}
	w2, _ := rest[0].Wave(ctx, "prod", "c2")
	if slices.Contains(w2.Canaries, w.Canaries[0]) || len(w2.Replaced) != 1 {
		t.Fatalf("record after the canary died: %+v", w2)
	}
}

// A slot whose lease is lost mid-deploy is taken by the next host: one
// more than max_parallel may deploy at once. The first still finishes and
// records its result.
func TestWaves_SlotLostMidDeploy_NextHostGoesOn_ResultStillRecorded(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 2)
	publishAll(t, as, "c1")
	ctx := ctxT(t, time.Minute)
	req := RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}, Live: "c1"}
	first, err := as[0].Admit(ctx, "prod", req)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := as[0].Session(ctx)
	r := raw(t, etcd.Endpoint)
	if _, err := r.Revoke(ctx, s.Lease()); err != nil { // the lease ends mid-deploy
		t.Fatal(err)
	}
	second, err := as[1].Admit(ctx, "prod", req)
	if err != nil || second.Slot != 0 {
		t.Fatalf("second: %+v, %v", second, err)
	}
	if err := first.Finish(ctx, Succeeded, ""); err != nil {
		t.Fatal(err)
	}
	if err := second.Finish(ctx, Succeeded, ""); err != nil {
		t.Fatal(err)
	}
	g, err := r.Get(ctx, as[0].keys("prod").dones(attemptID("c2", 0)), clientPrefix()...)
	if err != nil || g.Count != 2 {
		t.Fatalf("results recorded: %v, %v", g, err)
	}
}

// The head of the slot queue that sees several free slots takes one and
// grants the others to the hosts right behind it, on their own leases; a
// grantee that gives up returns its slot.
func TestSlots_HeadGrantsFreeSlotsBehindIt_AGranteeThatLeavesGivesItBack(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	ctx := ctxT(t, time.Minute)
	w := &Wave{Revision: "c2", MaxParallel: 3}
	qs, views := slotQueues(ctx, t, as, w)
	if views[0].pred != "" || views[1].pred == "" || len(views[0].free) != 3 {
		t.Fatalf("views: head %+v, second %+v", views[0], views[1])
	}
	kv, _, err := qs[0].take(ctx, views[0])
	if err != nil || kv == nil {
		t.Fatalf("take: %v, %v", kv, err)
	}
	for i, q := range qs[1:] {
		v, err := q.reread(ctx)
		if err != nil || v.granted == nil {
			t.Fatalf("host %d: %+v, %v; want a granted slot", i+2, v, err)
		}
		g, _ := raw(t, etcd.Endpoint).Get(ctx, string(v.granted.Key))
		if clientv3.LeaseID(g.Kvs[0].Lease) != q.sess.Lease() {
			t.Fatalf("granted slot on lease %x, want the grantee's %x", g.Kvs[0].Lease, q.sess.Lease())
		}
	}
	qs[2].leave()
	g, _ := raw(t, etcd.Endpoint).Get(ctx, as[0].keys("prod").slots(), clientPrefix()...)
	if g.Count != 2 {
		t.Fatalf("%d slots held after a grantee left, want 2", g.Count)
	}
}

// A queue place left behind by a leave that never reached etcd (the
// session alive) would block everyone queued after it; the host's next
// entry clears it.
func TestSlots_PlaceLeftBehindIsClearedByTheNextEntry(t *testing.T) {
	etcd := startEmbedded(t)
	as := agents(t, []string{etcd.Endpoint}, 3)
	publishAll(t, as, "c1")
	ctx := ctxT(t, time.Minute)
	req := RolloutRequest{Revision: "c2", Policy: Policy{MaxParallel: "1"}, Live: "c1"}
	holder, err := as[0].Admit(ctx, "prod", req)
	if err != nil {
		t.Fatal(err)
	}
	// web-2 enters the queue and "loses" its leave.
	sess, _ := as[1].Session(ctx)
	k := as[1].keys("prod")
	zombie := &slotQueue{c: as[1].Client, k: k, sess: sess, rev: "c2", haltKey: k.halt("c2"), n: 1,
		qkey: fmt.Sprintf("%s%016x-%d", k.queue(), sess.Lease(), as[1].token())}
	if _, err := zombie.enter(ctx); err != nil {
		t.Fatal(err)
	}
	behind := make(chan error, 1)
	go func() {
		adm, err := as[2].Admit(ctx, "prod", req) // queued behind the zombie
		if err == nil {
			err = adm.Finish(ctx, Succeeded, "")
		}
		behind <- err
	}()
	waitFor(t, 10*time.Second, "web-3 queued", func() bool {
		g, err := raw(t, etcd.Endpoint).Get(ctx, k.queue(), clientPrefix()...)
		return err == nil && g.Count == 2
	})
	// web-2 comes back for the revision: its new entry clears the old.
	again := make(chan error, 1)
	go func() {
		adm, err := as[1].Admit(ctx, "prod", req)
		if err == nil {
			err = adm.Finish(ctx, Succeeded, "")
		}
		again <- err
	}()
	_ = holder.Finish(ctx, Succeeded, "")
	for _, ch := range []chan error{behind, again} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a host stayed blocked behind a place left behind")
		}
	}
}
