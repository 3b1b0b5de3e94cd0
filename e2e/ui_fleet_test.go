package e2e

import (
	"bufio"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// startUI runs `berth ui` with config and returns its page's URL.
func startUI(t *testing.T, bin, config string, args ...string) string {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(bin, append([]string{"ui", "--config", config, "--listen", addr}, args...)...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }() // the one Wait
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	listening := make(chan struct{})
	var mu sync.Mutex
	var early []string
	go func() {
		s := bufio.NewScanner(pr)
		for s.Scan() {
			if strings.Contains(s.Text(), "berth ui listening") {
				close(listening)
				io.Copy(io.Discard, pr)
				return
			}
			mu.Lock()
			early = append(early, s.Text())
			mu.Unlock()
		}
	}()
	select {
	case <-listening:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("berth ui did not listen within 30s:\n%s", strings.Join(early, "\n"))
	}
	return "http://" + addr
}

// `berth ui` in a real browser, against the three-agent fleet: three
// hosts, the canary's failure halting its revision fleet-wide, and a
// fleet-wide pause; each host links its own page of the fleet.
func TestUI_FleetPageInABrowser(t *testing.T) {
	testenv.Parallel(t)
	b := newBrowser(t)
	w := newFleetWorld(t, 3)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	const waves = "{canary: 1, max_parallel: 1}"
	c1 := w.commit("c1: first release", fleetRev{img: v1, webMode: "serve", migrate: "m1", sleep: "1s", rollout: waves})
	for _, h := range w.hosts {
		h.start()
	}
	w.waitFor("every host live on c1", 4*time.Minute, func() bool { return w.allLive(c1) })
	c2 := w.commit("c2: broken release", fleetRev{img: v2, webMode: "crash", migrate: "m1", sleep: "1s", rollout: waves})
	w.waitFor("c2 failed on its canary", 3*time.Minute, func() bool {
		for _, h := range w.hosts {
			if st := h.stateNow(); st.Failed != nil && st.Failed.Commit == c2 {
				return true
			}
		}
		return false
	})
	if out, err := exec.Command(w.bin, "pause", "--fleet", "--reason", "release freeze", "--config", w.hosts[0].config).CombinedOutput(); err != nil {
		t.Fatalf("berth pause --fleet: %v\n%s", err, out)
	}

	url := startUI(t, w.bin, w.hosts[1].config)
	h := b.open(url + "/")
	if csp := header(h, "Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP %q", csp)
	}
	env := "#env-" + w.env
	if got := eval[int](b, `document.querySelectorAll("table.hosts tbody tr").length`); got != 3 {
		t.Errorf("%d hosts listed, want 3", got)
	}
	hosts := b.text(env + " table.hosts tbody")
	for _, want := range []string{"host-1", "host-2", "host-3", "c1: first release"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("the hosts' table lacks %q:\n%s", want, hosts)
		}
	}
	marks := b.text(env + " ul.marks")
	if !strings.Contains(marks, "paused fleet-wide: release freeze") {
		t.Errorf("no fleet-wide pause on the page: %q", marks)
	}
	if !strings.Contains(marks, c2[:12]+" halted fleet-wide") {
		t.Errorf("no halt of %.12s on the page: %q", c2, marks)
	}
	if got := b.text(env + " table.timeline tbody"); !strings.Contains(got, "halted") || !strings.Contains(got, "complete") {
		t.Errorf("the rollouts' timeline: %q, want c2 halted and c1 complete", got)
	}
	b.waitJS(`!document.getElementById("live").hidden`, 15*time.Second)
	b.shot("fleet")

	// A host's own page in the fleet's view.
	b.open(url + "/fleet/host/" + w.env + "/host-2")
	if got := b.text("h1"); !strings.Contains(got, "host-2") {
		t.Errorf("host page: %q", got)
	}
	b.shot("fleet-host")
	if v := b.cspViolations(); len(v) > 0 {
		t.Errorf("the CSP refused something: %q", v)
	}
}
