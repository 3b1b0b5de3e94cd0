package e2e

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/reconcile"
)

// TestE2E_FleetOfThreeAgents runs three `berth run` agents of one env
// against one etcd, one Git server and one registry, and goes through a
// fleet's life in order (each step starts from the state the last one
// left, so they share one world and run in sequence):
//  1. the first revision rolls out in waves (canary first, then at most
//     max_parallel: 1 host deploying at a time, from the journals' fleet
//     turns) and its migration runs once (Docker's own events, across the
//     three engines), with BERTH_FENCE_TOKEN; the others' journals say
//     where it ran; berth fleet status shows the three with the commit's
//     author and subject;
//  2. a revision that fails on its canary halts fleet-wide: the others
//     never start it, and that survives restarting every agent;
//  3. SIGKILL of the agent running a migration: the migration is
//     interrupted and the revision halted, never run a second time;
//  4. the same with a migration declared idempotent: another host takes
//     it over and the revision completes everywhere;
//  5. etcd stopped mid-rollout: the hosts keep serving, status says
//     waiting for etcd, and the rollout completes once etcd is back.
func TestE2E_FleetOfThreeAgents(t *testing.T) {
	testenv.Parallel(t)
	w := newFleetWorld(t, 3)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	const waves = "{canary: 1, max_parallel: 1}"

	t.Log("1. first release: waves, the migration once, status")
	c1 := w.commit("c1: first release", fleetRev{img: v1, webMode: "serve", migrate: "m1", sleep: "2s", rollout: waves})
	for _, h := range w.hosts {
		h.start()
	}
	w.waitFor("every host live on c1", 4*time.Minute, func() bool { return w.allLive(c1) })
	if got := w.migrationsCreated(c1); len(got) != 1 || sum(got) != 1 {
		t.Fatalf("c1's migration containers by host: %v, want exactly one run in the fleet", got)
	}
	// The runner's journal has the run in the pass that ran it, which
	// need not be the pass that succeeded: a pass that met an outage
	// after the migration (say, Docker failing to bind a published port)
	// is followed by one that finds the migration ran on this host.
	runners := map[string]bool{}
	for _, h := range w.hosts {
		for _, r := range h.journal() {
			if r.Commit != c1 {
				continue
			}
			for _, o := range r.OneShots {
				if o.Service == "migrate" && o.Skipped == "" && o.Interrupted == "" && o.Duration > 0 && o.ExitCode == 0 {
					runners[h.name] = true
					if !strings.Contains(o.Output, "testapp env BERTH_FENCE_TOKEN set") {
						t.Errorf("%s ran the migration without BERTH_FENCE_TOKEN: %q", h.name, o.Output)
					}
				}
			}
		}
	}
	if len(runners) != 1 {
		t.Fatalf("journals: the migration ran on %v; want one host", slices.Sorted(maps.Keys(runners)))
	}
	ran := slices.Collect(maps.Keys(runners))[0]
	// Each other host's succeeded pass says where it ran.
	skipped := 0
	for _, h := range w.hosts {
		if h.name == ran {
			continue
		}
	records:
		for _, r := range h.journal() {
			if r.Commit != c1 || r.Result != reconcile.ResultSucceeded {
				continue
			}
			for _, o := range r.OneShots {
				if o.Service == "migrate" && strings.HasPrefix(o.Skipped, "ran on host "+ran) {
					skipped++
					break records
				}
			}
		}
	}
	if skipped != 2 {
		t.Fatalf("journals: %d other hosts' succeeded passes say the migration ran on %s; want two", skipped, ran)
	}
	turns := w.turns(c1)
	if len(turns) != 3 {
		t.Fatalf("fleet turns of c1: %v", turns)
	}
	checkWaves(t, turns, 1)
	st := w.hosts[0].fleetStatus()
	if len(st.Envs) != 1 || len(st.Envs[0].Hosts) != 3 {
		t.Fatalf("fleet status: %+v", st)
	}
	for _, h := range st.Envs[0].Hosts {
		if !h.Alive || h.Live == nil || h.Live.Revision != c1 || h.Live.Subject != "c1: first release" || h.Live.Author == "" || h.Version == "" {
			t.Errorf("fleet status of %s: %+v (live %+v)", h.Host, h, h.Live)
		}
	}
	table, _ := exec.Command(w.bin, "fleet", "status", "--config", w.hosts[1].config).CombinedOutput()
	for _, want := range []string{"host-1", "host-2", "host-3", "c1: first release", fmt.Sprintf("%.12s", c1)} {
		if !strings.Contains(string(table), want) {
			t.Errorf("berth fleet status lacks %q:\n%s", want, table)
		}
	}
	t.Logf("c1 rolled out: migration ran on %s; turns %s", ran, turnsText(turns))

	t.Log("2. a canary failure halts the revision fleet-wide, across restarts")
	c2 := w.commit("c2: broken release", fleetRev{img: v2, webMode: "crash", migrate: "m1", sleep: "2s", rollout: waves})
	var canary *fleetHost
	w.waitFor("c2 failed on its canary", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if st := h.stateNow(); st.Failed != nil && st.Failed.Commit == c2 {
				canary = h
				return true
			}
		}
		return false
	})
	w.waitFor("the other hosts hold c2", patience, func() bool {
		for _, h := range w.hosts {
			if h != canary && (h.stateNow().FleetHeld == nil || h.stateNow().FleetHeld.Commit != c2) {
				return false
			}
		}
		return true
	})
	restarted := time.Now()
	for _, h := range w.hosts {
		h.kill()
		h.start()
	}
	w.waitFor("every agent checked the head again after its restart", patience, func() bool {
		for _, h := range w.hosts {
			recs := h.journal()
			if len(recs) == 0 || recs[0].LastPass.Before(restarted) && recs[0].Finished.Before(restarted) {
				return false
			}
		}
		return true
	})
	for _, h := range w.hosts {
		if h.live() != c1 {
			t.Errorf("%s: live %.12s, want c1 kept", h.name, h.live())
		}
		if got := h.serving(); got != "version=v1" {
			t.Errorf("%s serves %q, want v1", h.name, got)
		}
		if h == canary {
			continue
		}
		for _, r := range h.journal() {
			if r.Commit == c2 && (r.Fleet != nil && !r.Fleet.Admitted.IsZero() || r.Changed) {
				t.Errorf("%s started c2 after the canary failed: %+v", h.name, r)
			}
		}
	}
	if got := w.migrationsCreated(c2); sum(got) != 1 || got[canary.name] != 1 {
		t.Errorf("c2's migration (a new image: a new migration) by host: %v, want once, on the canary %s", got, canary.name)
	}
	t.Logf("c2 failed on %s, held by the others across restarts", canary.name)

	t.Log("3. SIGKILL of a migration's runner: interrupted, halted, not run twice")
	c3 := w.commit("c3: slow migration", fleetRev{img: v2, webMode: "serve", migrate: "m3", sleep: "45s", rollout: waves})
	runner := w.waitMigrationRunner(c3)
	runner.kill()
	w.waitFor("c3 refused on the other hosts (migration interrupted)", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h == runner {
				continue
			}
			st := h.stateNow()
			if !(st.Failed != nil && st.Failed.Commit == c3 || st.FleetHeld != nil && st.FleetHeld.Commit == c3) {
				return false
			}
		}
		return true
	})
	interrupted := false
	for _, m := range w.hosts[0].fleetStatus().Envs[0].Migrations {
		if m.Revision == c3 && m.Status == "interrupted" && m.Host == runner.name {
			interrupted = true
		}
	}
	if !interrupted {
		t.Errorf("fleet status: no interrupted migration of c3 on %s: %+v", runner.name, w.hosts[0].fleetStatus().Envs[0].Migrations)
	}
	if got := w.migrationsCreated(c3); sum(got) != 1 || got[runner.name] != 1 {
		t.Fatalf("c3's migration containers by host: %v: want one, on %s", got, runner.name)
	}
	runner.start()
	for _, h := range w.hosts {
		if h.live() != c1 {
			t.Errorf("%s: live %.12s after c3 was halted, want c1", h.name, h.live())
		}
	}
	t.Logf("c3's migration interrupted on %s; the fleet halted c3", runner.name)

	t.Log("4. the same with an idempotent migration: another host takes it over")
	c4 := w.commit("c4: idempotent migration", fleetRev{img: v2, webMode: "serve", migrate: "m4", sleep: "20s", idem: true, rollout: waves})
	runner4 := w.waitMigrationRunner(c4)
	runner4.kill()
	w.waitFor("c4 live on the other hosts", 4*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h != runner4 && h.live() != c4 {
				return false
			}
		}
		return true
	})
	runner4.start()
	w.waitFor("c4 live on the restarted runner too", 3*time.Minute, func() bool { return w.allLive(c4) })
	got := w.migrationsCreated(c4)
	if sum(got) != 2 || got[runner4.name] != 1 {
		t.Errorf("c4's migration containers by host: %v: want the killed runner's and one takeover", got)
	}
	took := false
	for _, m := range w.hosts[0].fleetStatus().Envs[0].Migrations {
		if m.Revision == c4 && m.Status == "done" && m.Host != runner4.name && strings.Contains(m.Note, "took over") {
			took = true
		}
	}
	if !took {
		t.Errorf("fleet status: c4's migration not done by another host: %+v", w.hosts[0].fleetStatus().Envs[0].Migrations)
	}
	t.Logf("c4's migration taken over after %s was killed", runner4.name)

	t.Log("5. etcd stopped mid-rollout: hosts keep serving, then the rollout completes")
	// The pause after the canary keeps the other hosts waiting at its
	// gate while etcd stops, however slow the machine: the rollout is
	// mid-way, not done before the test notices the canary.
	c5 := w.commit("c5: rollout through an etcd outage", fleetRev{img: v1, webMode: "serve", marker: "c5", migrate: "m5", sleep: "1s",
		rollout: "{canary: 1, max_parallel: 1, pause: 10s}"})
	w.waitFor("c5 live on its canary", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h.live() == c5 {
				return true
			}
		}
		return false
	})
	w.etcd.Stop()
	stopped := time.Now()
	// A host waiting at the gate or queued for the slot sits in a watch:
	// it says "waiting for etcd" once its session's keepalives go
	// unanswered (about half the lease TTL), before the lease lapses.
	w.waitFor("a host waiting for etcd", patience, func() bool {
		for _, h := range w.hosts {
			if h.live() != c5 && strings.Contains(h.apiStatus(), "waiting for etcd") {
				return true
			}
		}
		return false
	})
	t.Logf("a host waiting for etcd %s after it stopped", time.Since(stopped).Round(100*time.Millisecond))
	for time.Since(stopped) < 8*time.Second { // twice the lease TTL
		for _, h := range w.hosts {
			if got := h.serving(); !strings.HasPrefix(got, "version=") {
				t.Fatalf("%s stopped serving while etcd was down: %q", h.name, got)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	w.etcd.Start()
	w.waitFor("c5 live everywhere after etcd returned", 4*time.Minute, func() bool { return w.allLive(c5) })
	checkWaves(t, w.turns(c5), 1)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// checkWaves asserts the canary went first and at most maxParallel hosts
// were inside a deploy at once.
func checkWaves(t *testing.T, turns map[string]*reconcile.FleetTurn, maxParallel int) {
	t.Helper()
	var canaries []string
	for h, tr := range turns {
		if tr.Canary {
			canaries = append(canaries, h)
		}
	}
	if len(canaries) != 1 {
		t.Errorf("canaries %v, want one: %s", canaries, turnsText(turns))
		return
	}
	c := turns[canaries[0]]
	for h, tr := range turns {
		if h != canaries[0] && tr.Admitted.Before(c.Released) {
			t.Errorf("%s was let in before the canary %s finished: %s", h, canaries[0], turnsText(turns))
		}
	}
	if n := maxOverlap(turns); n > maxParallel {
		t.Errorf("%d hosts deploying at once, max_parallel %d: %s", n, maxParallel, turnsText(turns))
	}
}

func turnsText(turns map[string]*reconcile.FleetTurn) string {
	var parts []string
	for _, h := range slices.Sorted(maps.Keys(turns)) {
		tr := turns[h]
		parts = append(parts, fmt.Sprintf("%s[canary=%t %s→%s]", h, tr.Canary, tr.Admitted.Format("15:04:05.000"), tr.Released.Format("15:04:05.000")))
	}
	return strings.Join(parts, " ")
}

// waitMigrationRunner waits until one host's engine runs commit's
// migration and returns that host.
func (w *fleetWorld) waitMigrationRunner(commit string) *fleetHost {
	w.t.Helper()
	var runner *fleetHost
	w.waitFor(fmt.Sprintf("%.12s's migration running somewhere", commit), 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if h.migrationRunning(commit) {
				runner = h
				return true
			}
		}
		return false
	})
	return runner
}

// apiStatus is the agent's /api/status (its view of the pass in flight
// included), or the error.
func (h *fleetHost) apiStatus() string {
	sock := filepath.Join(filepath.Dir(h.config), "api.sock")
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://berth/api/status")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
