package fleet

import (
	"slices"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// waitLog records what a Waiting hook was told.
type waitLog struct {
	mu   sync.Mutex
	said []string
}

func (l *waitLog) hook(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.said = append(l.said, s)
}

func (l *waitLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.said)
}

func (l *waitLog) last() string {
	s := l.all()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// "waiting for etcd" goes over the call's own reason while etcd is
// silent; a reason set meanwhile shows once etcd answers; nothing after
// the end.
func TestWaitNote_EtcdOverTheReasonAndTheReasonBack(t *testing.T) {
	var l waitLog
	n := &waitNote{hook: l.hook}
	n.set("queued")
	n.outage(false)
	n.outage(true)
	n.outage(true)
	n.set("waiting for a deploy slot")
	n.outage(false)
	n.end()
	n.set("late")
	n.outage(true)
	want := []string{"queued", WaitingForEtcd, "waiting for a deploy slot", ""}
	if got := l.all(); !slices.Equal(got, want) {
		t.Fatalf("the hook was told %q, want %q", got, want)
	}
}

// A host queued for the only deploy slot when etcd stops says "waiting
// for etcd" within about half a lease TTL (its watch asks nothing, its
// keepalives go unanswered), goes back to waiting for the slot when etcd
// returns before its lease lapses, and takes the slot once it is free.
func TestAdmit_QueuedWhenEtcdStops_SaysWaitingForEtcdThenWaitsForTheSlotAgain(t *testing.T) {
	etcd := testenv.StartEtcd(t) // a process: it stops at once, and starts again on its port
	const ttl = 15 * time.Second
	as := agents(t, []string{etcd.ClientURL}, 2, withTTL(ttl))
	publishAll(t, as, "c1")
	ctx := ctxT(t, 2*time.Minute)
	p := Policy{MaxParallel: "1"}
	first, err := as[0].Admit(ctx, "prod", RolloutRequest{Revision: "c2", Policy: p, Live: "c1"})
	if err != nil || first.Slot < 0 {
		t.Fatalf("first admission %+v, %v", first, err)
	}
	var l waitLog
	type admitted struct {
		a   *Admission
		err error
	}
	second := make(chan admitted, 1)
	go func() {
		a, err := as[1].Admit(ctx, "prod", RolloutRequest{Revision: "c2", Policy: p, Live: "c1", Waiting: l.hook})
		second <- admitted{a, err}
	}()
	slot := "waiting for a deploy slot (1 in use, max_parallel 1)"
	waitFor(t, 30*time.Second, "the second host waiting for the slot", func() bool { return l.last() == slot })
	etcd.Stop()
	stopped := time.Now()
	waitFor(t, ttl*2/3, "the second host waiting for etcd", func() bool { return l.last() == WaitingForEtcd })
	t.Logf("waiting for etcd %s after etcd stopped", time.Since(stopped).Round(100*time.Millisecond))
	etcd.Start()
	waitFor(t, ttl, "the second host waiting for the slot again", func() bool { return l.last() == slot })
	if err := first.Finish(ctx, Succeeded, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-second:
		if r.err != nil || r.a.Slot < 0 {
			t.Fatalf("second admission %+v, %v", r.a, r.err)
		}
		_ = r.a.Finish(ctx, Succeeded, "")
	case <-ctx.Done():
		t.Fatal("the second host never got the slot")
	}
	want := []string{slot, WaitingForEtcd, slot, ""}
	if got := slices.Compact(l.all()); !slices.Equal(got, want) {
		t.Errorf("the second host's Waiting was told %q, want %q", got, want)
	}
}
