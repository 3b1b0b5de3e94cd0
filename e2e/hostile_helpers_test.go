package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"berth.dev/berth/internal/testenv"
)

// waitState polls state.json until ok holds (the state itself, not a log
// line written before it).
func waitState(t *testing.T, w *world, ok func(hostileState) bool) hostileState {
	t.Helper()
	deadline := time.Now().Add(patience)
	var s hostileState
	for {
		b, err := os.ReadFile(filepath.Join(w.state, "state.json"))
		if err == nil {
			s = hostileState{}
			if json.Unmarshal(b, &s) == nil && ok(s) {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("state did not reach the expected value within %s: %s", patience, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// snapshot records every file and directory under roots (but skip) with
// its mode, size and modification time.
func snapshot(t *testing.T, roots, skip []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			for _, s := range skip {
				if p == s || strings.HasPrefix(p, s+"/") {
					return fs.SkipDir
				}
			}
			if strings.HasSuffix(p, ".pid") {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			out[p] = fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
			return nil
		})
	}
	return out
}

func (w *world) containerIDs() []string {
	list, err := w.d.Client.ContainerList(context.Background(), container.ListOptions{All: true})
	if err != nil {
		w.t.Fatal(err)
	}
	var ids []string
	for _, c := range list {
		if strings.Contains(strings.Join(c.Names, ","), w.env) {
			ids = append(ids, c.ID)
		}
	}
	return ids
}

// TestE2E_HostileRevisionTheAgentDiesOnIsRefused: a revision that kills the
// agent where no recover reaches (memory, the watchdog; played by SIGKILL
// during its deploy) is tried once more by the next `berth run`, and the
// one after records a verdict on it instead of dying on it again (systemd
// gives up after a few quick restarts); the live revision keeps serving.
func TestE2E_HostileRevisionTheAgentDiesOnIsRefused(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	w.d.CleanupImage(v1.Ref())
	w.d.CleanupImage(v2.Ref())
	c1 := w.commit("v1", v1, "serve")
	d := w.start()
	waitState(t, w, func(s hostileState) bool { return s.Live.Commit == c1 })
	if w.serving() != "version=v1" {
		t.Fatalf("v1 not serving: %q", w.serving())
	}
	// v2's server never turns healthy: its deploy waits in the health
	// gate (the world's health timeout) long enough to be killed there.
	c2 := w.commit("v2", v2, "unhealthy")
	mark := filepath.Join(w.state, "envs", w.env, "attempt.json")
	inDeploy := func(deaths int) {
		t.Helper()
		deadline := time.Now().Add(patience)
		for {
			var m struct {
				Commit, Stage string
				Deaths        int
			}
			b, err := os.ReadFile(mark)
			if err != nil {
				// The state dir layout of a single-env agent.
				b, err = os.ReadFile(filepath.Join(w.state, "attempt.json"))
			}
			if err == nil && json.Unmarshal(b, &m) == nil && m.Commit == c2 && m.Deaths == deaths &&
				!slices.Contains([]string{"list", "fetch", "load", "plan"}, m.Stage) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no mark of v2's deploy with %d deaths within 120s: %s", deaths, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	inDeploy(0)
	d.kill()
	d = w.start()
	inDeploy(1) // tried once more
	d.kill()
	w.start()
	s := waitState(t, w, func(s hostileState) bool { return s.Failed.Commit == c2 })
	if !strings.Contains(s.Failed.Reason, "the agent died 2 times in a row while on "+c2[:12]) {
		t.Errorf("refused for %q", s.Failed.Reason)
	}
	if s.Live.Commit != c1 {
		t.Fatalf("live %s, want v1's %s", s.Live.Commit, c1)
	}
	w.eventually("v1 serving", func() bool { return w.serving() == "version=v1" })
	hist := w.journalText(t)
	if !strings.Contains(hist, "died 2 times") {
		t.Errorf("the journal records no verdict on v2:\n%s", hist)
	}
}
