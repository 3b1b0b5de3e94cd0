package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/envs"
)

// TestAgent_ARevisionTheAgentDiesOnIsRefused: a revision that takes the
// agent down where no recover reaches (memory, the watchdog) — played here
// by a load that never returns, after which the agent is abandoned as a
// killed process would be — is tried by the next agent once more, and the
// one after records a verdict on it without loading it, so systemd's
// restarts do not loop on it. An agent that survives a pass leaves no mark.
func TestAgent_ARevisionTheAgentDiesOnIsRefused(t *testing.T) {
	host := newFakeHost()
	src := &fakeSource{head: "c1"}
	first, _ := newAgent(t, src, host)
	if err := first.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	mark := filepath.Join(first.StateDir, attemptFile)
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a pass that ended left its mark: %v", err)
	}

	block := make(chan struct{})
	var wedged sync.WaitGroup
	t.Cleanup(func() { close(block); wedged.Wait() })
	var loads []string
	var mu sync.Mutex
	agent := func() *Agent {
		a, _ := newAgent(t, src, host)
		a.StateDir, a.Journal = first.StateDir, first.Journal
		a.Load = func(_ context.Context, rev *Revision) (*envs.Env, error) {
			mu.Lock()
			loads = append(loads, rev.Commit)
			mu.Unlock()
			if rev.Commit == "bomb" {
				<-block
				return nil, errors.New("released at the end of the test")
			}
			return fakeEnv(rev.Commit), nil
		}
		return a
	}
	// dies runs a pass of a fresh agent until it is wedged in the load
	// of "bomb", then abandons it.
	dies := func(wantDeaths int) {
		t.Helper()
		a := agent()
		wedged.Add(1)
		go func() { defer wedged.Done(); a.Check(context.Background()) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var m attempt
			b, _ := os.ReadFile(mark)
			if json.Unmarshal(b, &m) == nil && m.Commit == "bomb" && m.Stage == "load" && m.Deaths == wantDeaths {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no mark of the load of bomb with %d deaths: %s", wantDeaths, b)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	src.head = "bomb"
	dies(0) // the first agent to take it
	dies(1) // the next tries once more, and dies too
	third := agent()
	if err := third.Check(t.Context()); err != nil {
		t.Fatalf("a verdict on a new revision is recorded, not returned: %v", err)
	}
	st, _ := LoadState(third.StateDir)
	if st.Failed == nil || st.Failed.Commit != "bomb" || !strings.Contains(st.Failed.Reason, "the agent died 2 times in a row while on bomb (in load") {
		t.Fatalf("failed %+v, want bomb refused", st.Failed)
	}
	if st.Live == nil || st.Live.Commit != "c1" {
		t.Fatalf("live %+v, want c1 still", st.Live)
	}
	// The same agent goes on with the live revision; bomb is not loaded
	// again, and no mark is left.
	if err := third.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := strings.Count(strings.Join(loads, ","), "bomb")
	mu.Unlock()
	if n != 2 {
		t.Fatalf("bomb loaded %d times (loads %v), want 2: once per agent that died", n, loads)
	}
	if _, err := os.Stat(mark); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mark left after passes that ended: %v", err)
	}
	recs, _ := third.Journal.List()
	found := false
	for _, r := range recs {
		found = found || r.Commit == "bomb" && r.Result == ResultFailed && r.Class == "verdict" && r.Phase == "load"
	}
	if !found {
		t.Fatalf("no verdict on bomb in the journal: %+v", recs)
	}
}

// TestAgent_ANewEnvsFirstPassIsMarked: the first pass of an env whose
// state dir does not exist yet marks its revision too (the dir is made
// for it): a revision that kills the agent on a fresh host is caught as
// on any other.
func TestAgent_ANewEnvsFirstPassIsMarked(t *testing.T) {
	a, _ := newAgent(t, &fakeSource{head: "bomb"}, newFakeHost())
	a.StateDir = filepath.Join(a.StateDir, "envs", "web")
	block := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(block); <-done })
	a.Load = func(context.Context, *Revision) (*envs.Env, error) {
		<-block
		return nil, errors.New("released at the end of the test")
	}
	go func() { defer close(done); a.Check(context.Background()) }()
	mark := filepath.Join(a.StateDir, attemptFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var m attempt
		b, _ := os.ReadFile(mark)
		if json.Unmarshal(b, &m) == nil && m.Commit == "bomb" && m.Stage == PhaseLoad {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mark of the load of bomb in a new state dir: %q", b)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
