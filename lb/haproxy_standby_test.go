package lb

import (
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// SwitchStandby leaves the old servers drained and in maintenance; a
// switch back makes them ready at once, without waiting for HAProxy's
// checks (the test backend's rise takes ≥ 200 ms), under load with no
// failed request; Retire deletes the standby servers. The backend's file
// names the env berth switches it for.
func TestHAProxy_StandbyOldServersComeBackAtOnce(t *testing.T) {
	hp, sw := startHAProxy(t, "")
	sw.Env = "shop"
	a1, a2, b := newAppServer(t, "a", 2*time.Millisecond), newAppServer(t, "a", 2*time.Millisecond), newAppServer(t, "b", 2*time.Millisecond)
	old := []string{a1.addr, a2.addr}
	if err := sw.Switch(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	l := testenv.StartLoad(t, hp.URL()+"/", 8, testenv.Paced)
	waitFor(t, 5*time.Second, "load reaching a", func() bool { return a1.served.Load() > 50 })
	if err := sw.SwitchStandby(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	if n := a1.inflight.Load() + a2.inflight.Load(); n != 0 {
		t.Fatalf("%d requests in flight on the old servers after the switch", n)
	}
	servers := strings.Join(berthServers(t, hp), " ")
	for _, s := range []string{a1.addr, a2.addr} {
		if !strings.Contains(servers, s) {
			t.Fatalf("old server %s deleted, want it kept in standby: %s", s, servers)
		}
	}
	waitFor(t, 5*time.Second, "load reaching b", func() bool { return b.served.Load() > 50 })
	if owner := HAProxyOwner(hp.ServersDir, "app"); owner != "shop" {
		t.Fatalf("owner %q, want shop", owner)
	}
	servedA := a1.served.Load() + a2.served.Load()
	start := time.Now()
	if err := sw.Switch(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	back := time.Since(start)
	waitFor(t, 5*time.Second, "load back on a", func() bool { return a1.served.Load()+a2.served.Load() > servedA+50 })
	if got := strings.Join(berthServers(t, hp), " "); strings.Contains(got, b.addr) {
		t.Fatalf("the new server is still in the backend after the switch back: %s", got)
	}
	t.Logf("switch back to the standby servers took %s", back.Round(time.Millisecond))
	// Standby again, then retired.
	if err := sw.SwitchStandby(t.Context(), []string{b.addr}); err != nil {
		t.Fatal(err)
	}
	if err := sw.Retire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := berthServers(t, hp); len(got) != 1 || !strings.Contains(got[0], b.addr) {
		t.Fatalf("after Retire: %v, want only b", got)
	}
	ls := l.Stop()
	if ls.Failed != 0 {
		t.Fatalf("load: %s", ls)
	}
	t.Logf("load: %s", ls)
}
