package testenv

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Load sends GETs to one URL from several goroutines over keep-alive
// connections until stopped, and counts every failure: transport errors
// (refused, reset, EOF, timeout) and answers other than 200. It is the
// client side of every cutover-under-load test and benchmark.
type Load struct {
	sent, failed, connErrs, badStatus atomic.Int64
	mu                                sync.Mutex
	samples                           []string
	cancel                            context.CancelFunc
	wg                                sync.WaitGroup
	once                              sync.Once
}

// LoadStats is what a Load counted.
type LoadStats struct {
	Sent, Failed        int64
	ConnErrs, BadStatus int64    // of Failed: no answer; an answer other than 200
	Samples             []string // the first few failures, with when
}

// LoadOptions shape a Load; the zero value is constant load as fast as the
// balancer answers, which benchmarks measure.
type LoadOptions struct {
	// Every is the pause between one client's requests (0: none).
	Every time.Duration
}

// Paced is a test's load: each client pauses 2 ms between requests, so
// a few clients keep a request in flight at every switch. Flat out, the
// clients, the balancer, Docker's userland proxy and the app each take
// all the CPU the scheduler gives them, for minutes, beside a suite that
// already loads 2 cores 10–20 times over.
var Paced = LoadOptions{Every: 2 * time.Millisecond}

// StartLoad starts workers clients against url. Idle connections close
// after 5 s: a connection Go's client dialled and never used would hold an
// old nginx worker until nginx's client_header_timeout (docs/benchmarks.md,
// the drain outlier). Stop ends it; t's cleanup stops it too.
func StartLoad(t testing.TB, url string, workers int, opts ...LoadOptions) *Load {
	t.Helper()
	var o LoadOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	tr := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, IdleConnTimeout: 5 * time.Second}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				l.request(ctx, client, url)
				if o.Every > 0 {
					select {
					case <-ctx.Done():
					case <-time.After(o.Every):
					}
				}
			}
		}()
	}
	t.Cleanup(func() { l.Stop() })
	return l
}

func (l *Load) request(ctx context.Context, client *http.Client, url string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		l.fail(&l.connErrs, err.Error())
		return
	}
	resp, err := client.Do(req)
	if ctx.Err() != nil {
		if err == nil {
			resp.Body.Close()
		}
		return // stopped: neither sent nor failed
	}
	l.sent.Add(1)
	if err != nil {
		l.fail(&l.connErrs, err.Error())
		return
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil && ctx.Err() == nil:
		l.fail(&l.connErrs, "body: "+err.Error())
	case resp.StatusCode != http.StatusOK:
		l.fail(&l.badStatus, resp.Status)
	}
}

func (l *Load) fail(kind *atomic.Int64, what string) {
	l.failed.Add(1)
	kind.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) < 5 {
		l.samples = append(l.samples, time.Now().Format("15:04:05.000")+" "+what)
	}
}

// Stop ends the load and waits for the requests in flight; it returns
// what was counted. Calling it again returns the same counts.
func (l *Load) Stop() LoadStats {
	l.once.Do(func() { l.cancel(); l.wg.Wait() })
	return l.Stats()
}

// Stats is what was counted so far.
func (l *Load) Stats() LoadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return LoadStats{Sent: l.sent.Load(), Failed: l.failed.Load(), ConnErrs: l.connErrs.Load(),
		BadStatus: l.badStatus.Load(), Samples: append([]string(nil), l.samples...)}
}

func (s LoadStats) String() string {
	return fmt.Sprintf("%d requests, %d failed (%d connection errors, %d non-200) %v",
		s.Sent, s.Failed, s.ConnErrs, s.BadStatus, s.Samples)
}

// Wrk is wrk (one thread, WrkConns keep-alive connections) against a URL.
// Unlike Go's client, wrk never resends a request whose reused connection
// closed before an answer, so every socket error a reload or a drain causes
// shows.
type Wrk struct {
	cmd *exec.Cmd
	out strings.Builder
}

// WrkConns is how many connections StartWrk opens.
const WrkConns = 8

// WrkStats are wrk's counts: requests, non-2xx answers, socket errors.
type WrkStats struct{ Requests, Non2xx, Connect, Read, Write, Timeout int64 }

// Add sums two runs' counts.
func (w WrkStats) Add(o WrkStats) WrkStats {
	return WrkStats{w.Requests + o.Requests, w.Non2xx + o.Non2xx, w.Connect + o.Connect, w.Read + o.Read, w.Write + o.Write, w.Timeout + o.Timeout}
}

func (w WrkStats) String() string {
	return fmt.Sprintf("%d requests, %d non-2xx, socket errors: connect %d, read %d, write %d, timeout %d",
		w.Requests, w.Non2xx, w.Connect, w.Read, w.Write, w.Timeout)
}

// StartWrk starts wrk against url; Stop ends it. Debian's wrk is a test
// service like nginx: missing, it fails the test under BERTH_INTEGRATION=1.
// With opts' Every, each connection pauses that long between requests
// (wrk's Lua delay()).
func StartWrk(t testing.TB, url string, opts ...LoadOptions) *Wrk {
	t.Helper()
	shortSkip(t, "StartWrk")
	if _, err := exec.LookPath("wrk"); err != nil {
		unavailable(t, "wrk", err)
	}
	args := []string{"-t1", "-c" + strconv.Itoa(WrkConns), "-d600s", "--timeout", "10s"}
	if len(opts) > 0 && opts[0].Every > 0 {
		script := filepath.Join(t.TempDir(), "pace.lua")
		lua := fmt.Sprintf("function delay()\n  return %d\nend\n", max(opts[0].Every.Milliseconds(), 1))
		if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-s", script)
	}
	w := &Wrk{cmd: exec.Command("wrk", append(args, url)...)}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	return w
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkStatus   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// Stop stops wrk (SIGINT: it prints its summary) and reads its counts; the
// error lines appear in wrk's summary only when there were errors.
func (w *Wrk) Stop(t testing.TB) WrkStats {
	t.Helper()
	w.cmd.Process.Signal(syscall.SIGINT)
	w.cmd.Wait()
	out := w.out.String()
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in wrk's output:\n%s", out)
	}
	s := WrkStats{Requests: num(m[1])}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		s.Connect, s.Read, s.Write, s.Timeout = num(m[1]), num(m[2]), num(m[3]), num(m[4])
	}
	if m := wrkStatus.FindStringSubmatch(out); m != nil {
		s.Non2xx = num(m[1])
	}
	return s
}

// Output is wrk's whole output (after Stop).
func (w *Wrk) Output() string { return w.out.String() }

// Flowing waits until n more requests have been answered (or failed)
// since the call: the load is running through the balancer before a
// cutover begins, and still after it ends, whatever the machine's speed.
func (l *Load) Flowing(t testing.TB, n int64) {
	t.Helper()
	from := l.sent.Load()
	deadline := time.Now().Add(2 * time.Minute)
	for l.sent.Load()-from < n {
		if time.Now().After(deadline) {
			t.Fatalf("load: fewer than %d requests in 2 minutes (%s)", n, l.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
