package lb

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

func TestNginx_NotRunningIsAnOutageAndTheFileIsRestored(t *testing.T) {
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	before, _ := os.ReadFile(sw.File)
	pid := readPid(t, sw.PidFile)

	t.Run("pid file missing", func(t *testing.T) {
		sw := *sw
		sw.PidFile = filepath.Join(t.TempDir(), "nginx.pid")
		err := sw.Switch(t.Context(), []string{b})
		if !failure.IsOutage(err) || !strings.Contains(err.Error(), "nginx is not running") {
			t.Fatalf("Switch without a pid file: %v (%s)", err, failure.Of(err))
		}
	})
	t.Run("the reload cannot reach the master", func(t *testing.T) {
		// A master that does not exist: the pid file names a process that
		// is gone (nginx killed without cleaning up).
		sw := *sw
		sw.PidFile = filepath.Join(t.TempDir(), "nginx.pid")
		os.WriteFile(sw.PidFile, []byte("999999\n"), 0o644)
		err := sw.Switch(t.Context(), []string{b})
		if !failure.IsOutage(err) {
			t.Fatalf("Switch with a stale pid file: %v (%s)", err, failure.Of(err))
		}
	})
	t.Run("nginx stopped", func(t *testing.T) {
		if err := exec.Command("nginx", append(n.Args(), "-s", "stop")...).Run(); err != nil {
			t.Fatal(err)
		}
		for alive(pid) {
			time.Sleep(10 * time.Millisecond)
		}
		err := sw.Switch(t.Context(), []string{b})
		if !failure.IsOutage(err) {
			t.Fatalf("Switch with nginx stopped: %v (%s)", err, failure.Of(err))
		}
	})
	if after, _ := os.ReadFile(sw.File); string(after) != string(before) {
		t.Fatalf("upstream file changed by failed switches:\n%s", after)
	}
}

func readPid(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// An agent killed between writing the upstream file and reloading nginx
// leaves the file right and nginx on the old upstream: the next Switch to
// the same backends must reload, once.
func TestNginx_FileWrittenButNotLoadedIsReloadedOnce(t *testing.T) {
	t.Parallel()
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	// nginx's workers started before the write, as on a host: the write
	// must be newer than every worker, by more than /proc's precision.
	master := readPid(t, sw.PidFile)
	for len(current(master)) == 0 || currentSince(master, time.Now()) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := atomicfile.WriteFile(sw.File, sw.render([]string{b}), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("before: %q", got)
	}
	reloads := n.Reloads(t)
	if err := sw.Switch(t.Context(), []string{b}); err != nil {
		t.Fatal(err)
	}
	if got := testenv.Get(t, n.URL()); got != "b" {
		t.Fatalf("after the switch nginx serves %q", got)
	}
	if got := n.Reloads(t) - reloads; got != 1 {
		t.Fatalf("%d reloads, want 1", got)
	}
	// Loaded now: the same switch again reloads nothing.
	if err := sw.Switch(t.Context(), []string{b}); err != nil {
		t.Fatal(err)
	}
	if got := n.Reloads(t) - reloads; got != 1 {
		t.Fatalf("%d reloads after switching to what is loaded, want 1", got)
	}
}

// An agent killed while old workers drained left the file written and
// nginx reloaded: the next Switch to the same backends does not reload
// again, but returns only once the old workers are gone, so the old
// backend is not retired under them.
func TestNginx_KilledDuringTheDrainWaitsForItWithoutAReload(t *testing.T) {
	t.Parallel()
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	// A client connection with no request yet keeps the old worker up
	// (until client_header_timeout, 60 s).
	conn := idleConn(t, n)
	reloads := n.Reloads(t)
	// What the killed agent did: write, test, reload; no wait.
	if err := atomicfile.WriteFile(sw.File, sw.render([]string{b}), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", append(n.Args(), "-s", "reload")...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	master := readPid(t, sw.PidFile)
	for len(shuttingDown(master)) == 0 {
		time.Sleep(5 * time.Millisecond)
	}

	closed := time.Now().Add(time.Second)
	time.AfterFunc(time.Second, func() { conn.Close() })
	if err := sw.Switch(t.Context(), []string{b}); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(closed) || len(shuttingDown(master)) != 0 {
		t.Fatal("Switch returned while an old worker was still draining")
	}
	if got := n.Reloads(t) - reloads; got != 1 {
		t.Fatalf("%d reloads, want 1 (the killed agent's)", got)
	}
}

// A Switch whose context ends while the old workers drain (the agent
// stopping) leaves nginx and the file agreeing: both back on the previous
// upstream.
func TestNginx_InterruptedDrainRestoresFileAndNginxTogether(t *testing.T) {
	t.Parallel()
	a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
	n, sw := startNginx(t, a)
	before, _ := os.ReadFile(sw.File)
	conn := idleConn(t, n)
	defer conn.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sw.Switch(ctx, []string{b}) }()
	master := readPid(t, sw.PidFile)
	for len(shuttingDown(master)) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	conn.Close() // the restore's own drain need not wait for it
	if err := <-done; err == nil {
		t.Fatal("no error from a Switch interrupted during its drain")
	}
	if after, _ := os.ReadFile(sw.File); string(after) != string(before) {
		t.Fatalf("file not restored:\n%s", after)
	}
	if got := testenv.Get(t, n.URL()); got != "a" {
		t.Fatalf("nginx serves %q after the interrupted switch, want a (as the file says)", got)
	}
}

// idleConn opens a client connection to nginx and sends nothing on it.
func idleConn(t *testing.T, n *testenv.Nginx) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	testenv.Get(t, n.URL()) // the one worker accepted conn before it answered this
	return conn
}

// The drain outlier: a connection without a request holds an old worker
// until client_header_timeout (60 s); Drain bounds berth's wait, and
// nginx's worker_shutdown_timeout bounds the worker.
func TestNginx_DrainIsBoundedByDrainAndByWorkerShutdownTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		main     string
		drain    time.Duration
		min, max time.Duration
	}{
		// The upper bounds only tell a bounded wait from the idle
		// connection's 60 s (or Drain's minute): a switch on a loaded
		// machine took 5.2 s with a 2 s drain.
		{"drain timeout", "", 2 * time.Second, 2 * time.Second, 30 * time.Second},
		{"worker_shutdown_timeout", "worker_shutdown_timeout 1s;", time.Minute, time.Second, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := testenv.HTTPBackend(t, "a"), testenv.HTTPBackend(t, "b")
			n := testenv.NewNginx(t)
			n.AddMain(t, tc.main)
			file := filepath.Join(n.ConfD, "berth-app.conf")
			os.WriteFile(filepath.Join(n.ConfD, "site.conf"), []byte("server { listen 127.0.0.1:"+itoa(n.Port)+"; location / { proxy_pass http://app; } }\n"), 0o644)
			os.WriteFile(file, []byte("upstream app { server "+a+"; }\n"), 0o644)
			n.Start(t)
			sw := &Nginx{Upstream: "app", File: file, Command: append([]string{"nginx"}, n.Args()...), PidFile: filepath.Join(n.Dir, "nginx.pid"), Drain: tc.drain}
			idleConn(t, n)
			start := time.Now()
			if err := sw.Switch(t.Context(), []string{b}); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took < tc.min || took > tc.max {
				t.Fatalf("switch took %s, want %s–%s", took, tc.min, tc.max)
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
