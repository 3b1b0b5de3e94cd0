package reconcile

import (
	"net"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// TestDeploy_APortLostInADockerdRestartIsRestored: dockerd, restarted with
// live-restore while another process holds a server's published port,
// cannot bind it again, yet lists the container as running, healthy and
// published. nginx then answers 502. The agent's next check finds the
// port refusing connections and replaces the server, and nginx serves
// again.
func TestDeploy_APortLostInADockerdRestartIsRestored(t *testing.T) {
	t.Parallel()
	h, pd := privateHost(t, true)
	v1 := testenv.PushApp(t, h.reg, testenv.ImageSpec{Version: "v1"})
	if _, err := h.deploy(rev{image: v1}, "a1"); err != nil {
		t.Fatalf("deploy v1: %v", err)
	}
	if got := h.serving(); got != "version=v1" {
		t.Fatalf("v1 deployed, nginx serves %q", got)
	}
	ms, err := h.engine.List(t.Context(), h.name)
	if err != nil {
		t.Fatal(err)
	}
	addr := ""
	for _, m := range ms {
		if m.Service == "web" && len(m.Ports) > 0 {
			addr, _, _ = strings.Cut(m.Ports[0], "->")
		}
	}
	if addr == "" {
		t.Fatalf("no published port of web in %+v", ms)
	}
	pd.Stop()
	// The engine's proxy is gone with it; take its port.
	var hold net.Listener
	deadline := time.Now().Add(30 * time.Second)
	for hold == nil {
		if hold, err = net.Listen("tcp", addr); err != nil && time.Now().After(deadline) {
			t.Fatalf("the port %s is still held after dockerd stopped: %v", addr, err)
		}
		if hold == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	pd.Start()
	hold.Close()
	if got := h.serving(); got == "version=v1" {
		t.Fatalf("dockerd bound %s again: the case under test did not happen", addr)
	}
	// The agent's re-checks, until there is nothing to do.
	deadline = time.Now().Add(2 * time.Minute)
	changed := false
	for {
		res, err := h.deploy(rev{image: v1}, "a1")
		if err == nil && !res.Changed {
			break
		}
		changed = changed || (err == nil && res.Changed)
		if time.Now().After(deadline) {
			t.Fatalf("not converged 2 min after the restart: %v", err)
		}
		time.Sleep(time.Second)
	}
	if !changed {
		t.Fatal("no pass replaced the server whose port was lost")
	}
	if got := h.serving(); got != "version=v1" {
		t.Fatalf("nginx serves %q, want version=v1", got)
	}
}
