package reconcile

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"berth.dev/berth/envs"
)

// countingSource counts listings; a listing can be held until released.
// It is safe for several envs at once.
type countingSource struct {
	fakeSource
	lists   atomic.Int32
	release chan struct{}
	mu      sync.Mutex
}

func (s *countingSource) Fetch(ctx context.Context, commit, deployed string) (*Revision, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fakeSource.Fetch(ctx, commit, deployed)
}

func (s *countingSource) Prune(keep ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fakeSource.Prune(keep...)
}

func (s *countingSource) Head(ctx context.Context) (string, error) {
	s.lists.Add(1)
	if s.release != nil {
		<-s.release
	}
	return s.fakeSource.Head(ctx)
}

type recordingPruner struct {
	mu               sync.Mutex
	keep, candidates []string
}

func (p *recordingPruner) PruneImages(_ context.Context, keep, candidates []string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keep, p.candidates = keep, candidates
	return candidates, nil
}

// Two envs on one agent: one listing of the head per poll for both, each
// with its own Agent and state; a verdict in one leaves the other
// deploying.
func TestShared_OneListingPerPollAndEnvsDeployIndependently(t *testing.T) {
	src := &countingSource{fakeSource: fakeSource{head: "c1"}}
	shared := &Shared{Source: src}
	hosts := map[string]*fakeHost{"a": newFakeHost(), "b": newFakeHost()}
	agents := map[string]*Agent{}
	for _, name := range []string{"a", "b"} {
		a, _ := newAgent(t, nil, hosts[name])
		v := shared.View(name, a.Load)
		a.Env, a.Source, a.Load = name, v.Source, v.Load
		agents[name] = a
	}
	poll := func() {
		t.Helper()
		if err := shared.Poll(t.Context()); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Add(1)
			go func() { defer wg.Done(); a.Check(t.Context()) }()
		}
		wg.Wait()
	}
	poll()
	if n := src.lists.Load(); n != 1 {
		t.Fatalf("%d listings for one poll of two envs, want 1", n)
	}
	// c2 is broken in a only: a keeps c1, b goes on to c2.
	hosts["a"].unhealthy["r/app@c2"] = true
	src.head = "c2"
	poll()
	if n := src.lists.Load(); n != 2 {
		t.Fatalf("%d listings after two polls, want 2", n)
	}
	sa, _ := LoadState(agents["a"].StateDir)
	sb, _ := LoadState(agents["b"].StateDir)
	if sa.Live.Commit != "c1" || sa.Failed == nil || sa.Failed.Commit != "c2" || sb.Live.Commit != "c2" || sb.Failed != nil {
		t.Fatalf("a: live %+v failed %+v; b: live %+v failed %+v", sa.Live, sa.Failed, sb.Live, sb.Failed)
	}
	if got := hosts["b"].running(); !slices.Equal(got, []string{"web@c2"}) {
		t.Fatalf("b runs %v", got)
	}
	// A pass that starts later than Fresh after the poll lists again.
	shared.Fresh = time.Millisecond
	time.Sleep(5 * time.Millisecond)
	if _, err := agents["b"].Source.Head(t.Context()); err != nil || src.lists.Load() != 3 {
		t.Fatalf("a stale listing was reused: %d listings, %v", src.lists.Load(), err)
	}
}

// Passes that ask while a listing is in flight share it; its error is
// every env's.
func TestShared_ConcurrentListingsCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &countingSource{fakeSource: fakeSource{listErr: errors.New("git unreachable")}, release: make(chan struct{})}
		shared := &Shared{Source: src}
		views := []View{shared.View("a", nil), shared.View("b", nil), shared.View("c", nil)}
		errs := make(chan error, len(views))
		for _, v := range views {
			go func() { _, err := v.Source.Head(t.Context()); errs <- err }()
		}
		// Every pass is blocked: one in the listing, the others waiting
		// for it.
		synctest.Wait()
		close(src.release)
		for range views {
			if err := <-errs; err == nil || err.Error() != "git unreachable" {
				t.Fatalf("err %v", err)
			}
		}
		if n := src.lists.Load(); n != 1 {
			t.Fatalf("%d listings for three concurrent passes, want 1", n)
		}
	})
}

// An env's prune keeps what the other envs keep and are deploying: their
// commits' working copies and their images.
func TestShared_PruneKeepsTheOtherEnvsCommitsAndImages(t *testing.T) {
	src := &fakeSource{}
	pr := &recordingPruner{}
	shared := &Shared{Source: src, Pruner: pr}
	load := func(_ context.Context, rev *Revision) (*envs.Env, error) { return fakeEnv(rev.Commit), nil }
	a, b := shared.View("a", load), shared.View("b", load)
	shared.Keep("b", []string{"b-live"}, []string{"r/app@b-live"})
	// b is in the middle of deploying b-next (fetched and loaded).
	rev, _ := b.Source.Fetch(t.Context(), "b-next", "")
	if _, err := b.Load(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	if err := a.Source.Prune("a-live", "a-old"); err != nil {
		t.Fatal(err)
	}
	slices.Sort(src.kept)
	if want := []string{"a-live", "a-old", "b-live", "b-next"}; !slices.Equal(src.kept, want) {
		t.Fatalf("working copies kept %v, want %v", src.kept, want)
	}
	removed, _ := a.Pruner.PruneImages(t.Context(), []string{"r/app@a-live"}, []string{"r/app@a-older", "r/app@b-live", "r/app@b-next"})
	if !slices.Equal(removed, []string{"r/app@a-older"}) {
		t.Fatalf("pruned %v, want only a's own old image", removed)
	}
	// Once b's deploy ended and b pruned, its in-flight commit is no
	// longer held for it beyond what it keeps.
	if err := b.Source.Prune("b-next"); err != nil {
		t.Fatal(err)
	}
	slices.Sort(src.kept)
	if want := []string{"a-live", "a-old", "b-next"}; !slices.Equal(src.kept, want) {
		t.Fatalf("working copies kept %v, want %v", src.kept, want)
	}
}
