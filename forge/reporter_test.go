package forge

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"berth.dev/berth/internal/failure"
)

// fakePoster records statuses and fails as told.
type fakePoster struct {
	mu    sync.Mutex
	calls []string // "sha12 state description"
	fail  func(n int) error
	block chan struct{} // when set, SetStatus waits on it
}

func (f *fakePoster) SetStatus(ctx context.Context, sha string, s Status) error {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%.12s %s %s", sha, s.State, s.Description))
	if f.fail != nil {
		return f.fail(len(f.calls))
	}
	return nil
}

func (f *fakePoster) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func sha(c byte) string { return strings.Repeat(string(c), 40) }

func runReporter(t *testing.T, p Poster) (*Reporter, context.CancelFunc) {
	r := NewReporter(p, ReporterOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	go r.Run(ctx)
	return r, cancel
}

func TestReporter_OneRequestPerChangeAndTheLatestStateWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePoster{}
		r, stop := runReporter(t, p)
		defer stop()
		r.Update("prod", sha('a'), Pending, "deploying on web-1: prepare")
		synctest.Wait()
		for _, phase := range []string{"cli", "workers", "servers", "retire"} {
			r.Update("prod", sha('a'), Pending, "deploying on web-1: "+phase)
			time.Sleep(time.Second)
		}
		r.Update("prod", sha('a'), Success, "live on web-1")
		synctest.Wait()
		for range 1000 { // every poll of a quiet host reports the same
			r.Update("prod", sha('a'), Success, "live on web-1")
		}
		time.Sleep(time.Hour)
		want := []string{"aaaaaaaaaaaa pending deploying on web-1: prepare", "aaaaaaaaaaaa success live on web-1"}
		if got := p.got(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("posted %q, want %q", got, want)
		}
	})
}

func TestReporter_ProgressIsCoalescedToTheGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePoster{}
		r, stop := runReporter(t, p)
		defer stop()
		for i := range 60 { // a host every second for a minute
			r.Update("prod", sha('a'), Pending, fmt.Sprintf("live on %d/60 hosts", i))
			time.Sleep(time.Second)
		}
		r.Update("prod", sha('a'), Success, "live on 60/60 hosts")
		synctest.Wait()
		got := p.got()
		if len(got) > 6 || !strings.HasSuffix(got[len(got)-1], "live on 60/60 hosts") {
			t.Errorf("%d posts for a minute of progress, want ≤ 6 (one per 15 s, and the end): %q", len(got), got)
		}
	})
}

func TestReporter_ForgeDownIsWaitedOutWithBackoffAndOnlyTheLatestIsPosted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var down atomic.Bool
		down.Store(true)
		p := &fakePoster{fail: func(int) error {
			if down.Load() {
				return failure.AsOutage(fmt.Errorf("connection refused"))
			}
			return nil
		}}
		r, stop := runReporter(t, p)
		defer stop()
		r.Update("prod", sha('a'), Pending, "deploying on web-1: prepare")
		time.Sleep(time.Minute)
		tries := len(p.got())
		if tries < 3 || tries > 5 { // 0 s, 5 s, 15 s, 35 s (±10 %)
			t.Errorf("%d tries in a minute of outage, want 3–5 (backoff from 5 s)", tries)
		}
		r.Update("prod", sha('a'), Failure, "rolled back on web-1: web unhealthy")
		r.Update("prod", sha('b'), Pending, "deploying on web-1: prepare")
		r.Update("prod", sha('b'), Success, "live on web-1")
		down.Store(false)
		time.Sleep(20 * time.Minute)
		got := p.got()[tries:]
		want := "aaaaaaaaaaaa failure rolled back on web-1: web unhealthy|bbbbbbbbbbbb success live on web-1"
		if strings.Join(got, "|") != want {
			t.Errorf("after the outage: %q, want %q", got, want)
		}
	})
}

func TestReporter_RateLimitIsHonouredAndRefusalsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		p := &fakePoster{fail: func(n int) error {
			switch n {
			case 1:
				return failure.AsOutage(&RateLimitedError{Until: start.Add(time.Hour), Reason: "403"})
			case 2:
				return &APIError{Status: 422, Message: "description is too long"}
			}
			return nil
		}}
		r, stop := runReporter(t, p)
		defer stop()
		r.Update("prod", sha('a'), Pending, "deploying")
		time.Sleep(59 * time.Minute)
		if n := len(p.got()); n != 1 {
			t.Fatalf("%d requests during the rate limit, want 1", n)
		}
		time.Sleep(2 * time.Minute)
		r.Update("prod", sha('a'), Success, "live")
		time.Sleep(time.Minute)
		got := p.got()
		if len(got) != 3 || !strings.HasSuffix(got[2], "success live") {
			t.Errorf("posted %q: the refused one is dropped, the next state posted once", got)
		}
	})
}

func TestReporter_SupersededCommitSaysSoAndUpdateNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePoster{block: make(chan struct{})}
		r, stop := runReporter(t, p)
		defer stop()
		r.Update("prod", sha('a'), Pending, "live on 3/10 hosts")
		synctest.Wait() // the reporter is stuck in a request
		for i := range 10000 {
			r.Update("prod", sha('b'), Pending, fmt.Sprintf("live on %d/10 hosts", i%10))
		}
		r.Update("prod", sha('b'), Success, "live on 10/10 hosts")
		close(p.block)
		time.Sleep(time.Minute)
		got := strings.Join(p.got(), "|")
		for _, want := range []string{
			"aaaaaaaaaaaa superseded not deployed: superseded by bbbbbbbbbbbb (was live on 3/10 hosts)",
			"bbbbbbbbbbbb success live on 10/10 hosts",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("posted %q, want %q among them", got, want)
			}
		}
	})
}

// TestReporter_RequestsOfA100HostRollout is the figure in
// docs/benchmarks.md: a fleet leader feeding the reporter the summary of
// every host change of a 100-host rollout (canary, then 10 at a time, 20 s
// per host) makes requests by time and state, not by hosts.
func TestReporter_RequestsOfA100HostRollout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePoster{}
		r, stop := runReporter(t, p)
		defer stop()
		rev := sha('c')
		hosts := make([]HostView, 100)
		for i := range hosts {
			hosts[i] = HostView{Host: fmt.Sprintf("web-%03d", i), Alive: true, Live: sha('p')}
		}
		ro := &RolloutView{Canaries: []string{"web-000"}, MaxParallel: 10}
		changes := 0
		report := func() {
			changes++
			st, d := Summarize(rev, hosts, nil, ro)
			r.Update("prod", rev, st, d)
		}
		deploy := func(batch []int) {
			for _, i := range batch {
				hosts[i].Deploying, hosts[i].Phase, hosts[i].Started = rev, "servers", time.Now()
				report()
			}
			time.Sleep(20 * time.Second)
			for _, i := range batch {
				hosts[i].Deploying, hosts[i].Live = "", rev
				hosts[i].Result = &Outcome{Revision: rev, Class: "ok", At: time.Now()}
				report()
				time.Sleep(100 * time.Millisecond)
			}
		}
		deploy([]int{0})
		for w := 0; w < 99; w += 10 {
			var batch []int
			for i := 1 + w; i <= min(w+10, 99); i++ {
				batch = append(batch, i)
			}
			deploy(batch)
		}
		synctest.Wait()
		got := p.got()
		t.Logf("100-host rollout: %d host changes, %d forge requests", changes, len(got))
		if len(got) > 25 || !strings.HasSuffix(got[len(got)-1], "success live on 100/100 hosts") {
			t.Errorf("%d requests (want ≤ 25, ending in success): %q", len(got), got)
		}
	})
}

// TestReporter_AStragglerOfAnOlderCommitNeverTakesTheStatusBack: with a
// fleet, a host that finishes the older commit after another host started
// the newer one makes Target say the older one again (the latest event
// wins). The newer commit must not be called superseded by the older,
// nor the older commit's status be rewritten.
func TestReporter_AStragglerOfAnOlderCommitNeverTakesTheStatusBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := sha('a'), sha('b')
		t0 := time.Now()
		hosts := []HostView{
			{Host: "web-1", Alive: true, Live: a, Deploying: b, Started: t0.Add(2 * time.Second)},
			{Host: "web-2", Alive: true, Live: a, Result: &Outcome{Revision: a, Class: "ok", At: t0.Add(3 * time.Second)}},
		}
		if got := Target(hosts); got != a {
			t.Fatalf("Target = %.12s: the flip this test guards against no longer happens", got)
		}
		p := &fakePoster{}
		r, stop := runReporter(t, p)
		defer stop()
		r.Update("prod", a, Pending, "live on 1/2 hosts")
		synctest.Wait()
		r.Update("prod", b, Pending, "live on 0/2 hosts")
		synctest.Wait()
		r.Update("prod", a, Pending, "live on 2/2 hosts") // web-2 done with a
		synctest.Wait()
		time.Sleep(time.Minute)
		r.Update("prod", b, Success, "live on 2/2 hosts")
		synctest.Wait()
		time.Sleep(time.Minute)
		got := strings.Join(p.got(), "|")
		if strings.Contains(got, "bbbbbbbbbbbb superseded") || strings.Contains(got, "aaaaaaaaaaaa pending live on 2/2") {
			t.Errorf("a straggler of the older commit took the status back: %q", got)
		}
		if !strings.HasSuffix(got, "bbbbbbbbbbbb success live on 2/2 hosts") || !strings.Contains(got, "aaaaaaaaaaaa superseded") {
			t.Errorf("posted %q: want a superseded, b live", got)
		}
	})
}

// TestReporter_ForgetDropsWhatWasNotPosted: an agent that loses an env's
// reporter role forgets the env, so a state it had not posted yet (a
// coalesced progress) cannot overwrite the new holder's later one.
func TestReporter_ForgetDropsWhatWasNotPosted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &fakePoster{block: make(chan struct{})}
		r, stop := runReporter(t, p)
		defer stop()
		r.Update("prod", sha('a'), Pending, "live on 1/3 hosts")
		synctest.Wait() // in flight
		r.Update("prod", sha('a'), Pending, "live on 2/3 hosts")
		r.Update("web", sha('b'), Pending, "live on 1/3 hosts")
		r.Forget("prod")
		close(p.block)
		time.Sleep(time.Hour)
		want := "aaaaaaaaaaaa pending live on 1/3 hosts|bbbbbbbbbbbb pending live on 1/3 hosts"
		if got := strings.Join(p.got(), "|"); got != want {
			t.Errorf("posted %q, want %q", got, want)
		}
	})
}

// TestReporter_ARefusedTokenIsRetriedNotDropped: a 401 or 403 says the
// token is bad (expired, rotated, lacking a scope), not the status; the
// token file is read again on every request, so the status waits for the
// operator's fix with backoff instead of being lost.
func TestReporter_ARefusedTokenIsRetriedNotDropped(t *testing.T) {
	for _, code := range []int{401, 403} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &fakePoster{fail: func(n int) error {
					if n <= 2 {
						return &APIError{Method: "POST", Path: "/statuses", Status: code, Message: "Bad credentials"}
					}
					return nil
				}}
				r, stop := runReporter(t, p)
				defer stop()
				r.Update("prod", sha('a'), Success, "live on web-1")
				time.Sleep(time.Hour)
				got := p.got()
				if len(got) != 3 || got[2] != "aaaaaaaaaaaa success live on web-1" {
					t.Errorf("%d: posted %q, want the status tried until the token works", code, got)
				}
			})
		})
	}
}
