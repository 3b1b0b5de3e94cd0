package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/reconcile"
)

// A dockerd that stops answering (the agent reaches it through a gate
// that accepts and never answers, as a SIGSTOPped daemon does) ends the
// pass as an outage once the engine's deadline passes; meanwhile `berth
// status`, /api/status and the unit's STATUS= keep answering and say so;
// once the engine answers again the head deploys by itself.
func TestE2E_HungDockerdIsAnOutageAndStatusKeepsAnswering(t *testing.T) {
	testenv.Parallel(t)
	w := newWorld(t)
	sock := strings.TrimPrefix(w.d.Client.DaemonHost(), "unix://")
	gate := testenv.NewUnixGate(t, sock)
	cfg, _ := os.ReadFile(w.config)
	// A stall limit under the engine's 30 s deadline: the pass that waits
	// on the hung engine counts as wedged, so the test sees the watchdog
	// stop answering (and start again once the deadline ends the pass).
	// Not much under it: on a loaded machine a healthy deploy's container
	// start has gone over 5 s without progress.
	cfgText := strings.Replace(string(cfg), "deploy: {health_timeout: 2m, settle: 1s}", "deploy: {health_timeout: 2m, settle: 1s, stall_timeout: 15s}", 1)
	os.WriteFile(w.config, []byte(cfgText+"docker: {host: unix://"+gate.Addr+"}\n"), 0o600)
	v1 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"})
	v2 := testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})
	w.d.CleanupImage(v1.Ref())
	w.d.CleanupImage(v2.Ref())

	notifySock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifySock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	statuses := make(chan string, 1000)
	var mu sync.Mutex
	var lastPing time.Time
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			for _, l := range strings.Split(string(buf[:n]), "\n") {
				if l == "WATCHDOG=1" {
					mu.Lock()
					lastPing = time.Now()
					mu.Unlock()
				}
				if strings.HasPrefix(l, "STATUS=") {
					select {
					case statuses <- l:
					default:
					}
				}
			}
		}
	}()
	sincePing := func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if lastPing.IsZero() {
			return time.Hour
		}
		return time.Since(lastPing)
	}
	c1 := w.commit("v1", v1, "serve")
	cmd := exec.Command(w.bin, "run", "--config", w.config)
	cmd.Env = append(cmd.Environ(), "NOTIFY_SOCKET="+notifySock, "WATCHDOG_USEC=1000000") // WatchdogSec=1s: a ping every 0.5 s
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	w.waitLiveCommit(t, c1)
	// A healthy agent pings every 0.5 s (allowing for a loaded machine).
	for end := time.Now().Add(5 * time.Second); sincePing() > 2*time.Second; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no WATCHDOG=1 for %s while the agent is healthy", sincePing())
		}
	}

	gate.Hang(t)
	c2 := w.commit("v2", v2, "serve")
	// While the pass waits on the hung engine, status answers at once.
	start := time.Now()
	out, err := exec.Command(w.bin, "status", "--config", w.config, "--json").Output()
	var st struct {
		Live   struct{ Commit string }
		Docker string
	}
	json.Unmarshal(out, &st)
	if took := time.Since(start); took > 10*time.Second || st.Live.Commit != c1 || !strings.Contains(st.Docker, "not answering within") {
		t.Fatalf("berth status during the hang (%v, %s): %s", err, took, out)
	}
	var api struct {
		Live   struct{ Commit string }
		Docker string
		Agent  struct {
			Pass *struct{ Phase string }
			Last *struct{ Result string }
		}
	}
	resp, err := w.apiClient().Get("http://berth/api/status")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if api.Live.Commit != c1 || !strings.Contains(api.Docker, "not answering within") {
		t.Fatalf("/api/status during the hang: %+v", api)
	}

	// The pass waits on the engine without progress: past the stall
	// limit the watchdog stops answering and STATUS= says so.
	for seen := ""; !strings.HasPrefix(seen, "STATUS=wedged: ") || !strings.Contains(seen, ": no progress for"); {
		select {
		case seen = <-statuses:
		case <-time.After(30 * time.Second):
			t.Fatalf("no STATUS=wedged while the pass hangs; last %q", seen)
		}
	}
	// No answer from here on while the pass stays stuck (the engine's
	// deadline is 30 s away): two seconds of silence at a 0.5 s interval.
	for end := time.Now().Add(10 * time.Second); sincePing() < 2*time.Second; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("WATCHDOG=1 goes on while the pass is wedged (last %s ago)", sincePing())
		}
	}

	// The engine's deadline ends the pass: an outage, recorded and shown.
	out1 := w.waitOutage(t, "plan", 1)
	if !strings.Contains(out1.Reason, "deadline") && !strings.Contains(out1.Reason, "not answer") {
		t.Errorf("the outage does not say the engine did not answer: %s", out1.Reason)
	}
	deadline := time.After(patience)
	for seen := ""; !strings.Contains(seen, "; outage since"); {
		select {
		case seen = <-statuses:
		case <-deadline:
			t.Fatalf("no STATUS= naming the outage; last %q", seen)
		}
	}
	for end := time.Now().Add(10 * time.Second); sincePing() > time.Second; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the watchdog did not answer again once the pass ended (last ping %s ago)", sincePing())
		}
	}
	if s, _ := reconcile.LoadState(w.state); s.Failed != nil {
		t.Fatalf("a hung engine marked %.12s failed", s.Failed.Commit)
	}
	if got := w.serving(); got != "version=v1" {
		t.Fatalf("during the hang nginx serves %q", got)
	}

	gate.Up(t)
	w.waitLiveCommit(t, c2)
	if got := w.serving(); got != "version=v2" {
		t.Fatalf("after the engine came back nginx serves %q", got)
	}
}
