package fleet

import (
	"context"
	"sync"
	"testing"
	"time"
)

// leader records which agents lead, and lets a test see the current one.
type leader struct {
	mu      sync.Mutex
	who     string
	count   map[string]int
	overlap string
}

func (l *leader) lead(host string) func(ctx context.Context) {
	return func(ctx context.Context) {
		l.mu.Lock()
		if l.who != "" {
			l.overlap = l.who + " and " + host
		}
		l.who = host
		l.count[host]++
		l.mu.Unlock()
		<-ctx.Done()
		l.mu.Lock()
		l.who = ""
		l.mu.Unlock()
	}
}

func (l *leader) current() string { l.mu.Lock(); defer l.mu.Unlock(); return l.who }

func TestReporter_OneHolderAndANewOneWhenItDies(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	l := &leader{count: map[string]int{}}
	agents := map[string]*agent{}
	for _, h := range []string{"web-1", "web-2", "web-3"} {
		a := newAgent(t, eps, h)
		agents[h] = a
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go a.LeadReporter(ctx, "prod", l.lead(h))
	}
	waitFor(t, 15*time.Second, "a reporter", func() bool { return l.current() != "" })
	first := l.current()
	// The holder dies without a word: its lease lapses, another takes over.
	agents[first].crash()
	waitFor(t, 20*time.Second, "a new reporter", func() bool { c := l.current(); return c != "" && c != first })
	second := l.current()
	// A clean stop resigns: the third takes over without waiting for a TTL.
	agents[second].close()
	waitFor(t, 10*time.Second, "the last reporter", func() bool { c := l.current(); return c != "" && c != first && c != second })
	if l.overlap != "" {
		t.Errorf("two reporters at once: %s", l.overlap)
	}
	for h, n := range l.count {
		if n != 1 {
			t.Errorf("%s held the role %d times", h, n)
		}
	}
}

func TestReporter_WatchHostsSendsEachChange(t *testing.T) {
	etcd := startEmbedded(t)
	eps := []string{etcd.Endpoint}
	a := newAgent(t, eps, "web-1")
	b := newAgent(t, eps, "web-2")
	ctx := ctxT(t, 30*time.Second)
	views := a.WatchHosts(ctx, "prod")
	next := func(what string, ok func(FleetView) bool) {
		t.Helper()
		for {
			select {
			case v := <-views:
				if ok(v) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no view with %s", what)
			}
		}
	}
	a.Publish("prod", HostState{Live: &Commit{Revision: "c1"}})
	b.Publish("prod", HostState{Deploy: &Deploy{Revision: "c2", Phase: "servers"}})
	next("both hosts", func(v FleetView) bool {
		return len(v.Hosts) == 2 && v.Hosts[1].Deploy != nil
	})
	b.Publish("prod", HostState{Live: &Commit{Revision: "c2"}})
	next("web-2 live on c2", func(v FleetView) bool {
		return len(v.Hosts) == 2 && v.Hosts[1].Live != nil && v.Hosts[1].Live.Revision == "c2"
	})
	if err := a.HaltRevision(ctx, "prod", "c3", "web-1", "web unhealthy"); err != nil {
		t.Fatal(err)
	}
	next("the halt", func(v FleetView) bool { return len(v.Halts) == 1 && v.Halts[0].Revision == "c3" })
}
