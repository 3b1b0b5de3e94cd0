package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// TestE2E_CutoversUnderLoadSurviveRandomKills drives back-to-back cutovers
// of `berth run` while clients hold keep-alive connections through nginx,
// and SIGKILLs the agent at random moments of most of them (restarting it
// at once, as systemd would). Every cutover must converge to one whole
// revision, and the clients may see only what an nginx reload costs:
//
//   - no answer other than 2xx, for wrk and for a Go http.Client load;
//   - no connect, write or timeout error for wrk, and at most one read
//     error per wrk connection per reload (nginx closes the idle
//     keep-alive connections of the workers a reload retires; a client
//     that sent its next request at that instant reads EOF);
//   - no error at all for the Go client (it retries a GET whose reused
//     connection the server closed before answering);
//   - never more than one nginx reload per cutover, crashes included.
func TestE2E_CutoversUnderLoadSurviveRandomKills(t *testing.T) {
	if _, err := exec.LookPath("wrk"); err != nil {
		if testenv.Integration() {
			t.Fatal("wrk not installed (scripts/test installs it)")
		}
		t.Skip("wrk not installed (apt-get install wrk)")
	}
	const (
		cutovers   = 8
		kills      = 6
		wrkConns   = 8
		goClients  = 4
		killWithin = 7 * time.Second // a cutover takes ~5–12 s here
	)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d", seed)

	w := newWorld(t)
	imgs := []testenv.AppImage{testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v1"}), testenv.PushApp(t, w.reg, testenv.ImageSpec{Version: "v2"})}
	for _, img := range imgs {
		w.d.CleanupImage(img.Ref())
	}
	commit := func(i int) (string, testenv.AppImage) {
		img := imgs[i%2]
		// The marker changes every service's config: each commit is a
		// whole cutover (migration, worker, server), also back to an
		// image deployed before.
		compose := fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    environment: {APP_MODE: exit, APP_MARKER: cutover-%[2]d}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000", APP_MARKER: cutover-%[2]d}
  web:
    image: %[1]s
    environment: {APP_MARKER: cutover-%[2]d}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: %[3]s}
`, img.Ref(), i, w.lbFile)
		return w.repo.CommitFiles(t, fmt.Sprintf("cutover %d", i), map[string]string{"envs/" + w.env + "/compose.yaml": compose}), img
	}
	converged := func(c string, img testenv.AppImage, within time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		want := []string{"web@" + c[:12] + ":running", "worker@" + c[:12] + ":running"}
		for w.serving() != "version="+img.Version || !slices.Equal(w.containers(), want) {
			if time.Since(start) > within {
				t.Fatalf("not converged to %s within %s: serving %q, containers %v", c[:12], within, w.serving(), w.containers())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return time.Since(start)
	}

	c, img := commit(0)
	if code, out := w.once(); code != 0 {
		t.Fatalf("first deploy: exit %d\n%s", code, out)
	}
	converged(c, img, time.Minute)
	d := w.start()

	// The load, from before the first cutover to after the last.
	url := w.nginx.URL() + "/"
	wrk := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(wrkConns), "-d600s", "--timeout", "10s", url)
	var wrkOut strings.Builder
	wrk.Stdout, wrk.Stderr = &wrkOut, &wrkOut
	if err := wrk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wrk.Process.Kill() })
	g := startGoLoad(url, goClients)
	time.Sleep(time.Second)
	reloads := w.nginx.Reloads(t)

	killed := 0
	for i := 1; i <= cutovers; i++ {
		c, img := commit(i)
		kill := killed < kills && (cutovers-i < kills-killed || rng.IntN(4) != 0)
		start := time.Now()
		if kill {
			at := time.Duration(rng.Int64N(int64(killWithin)))
			time.Sleep(at)
			d.kill()
			killed++
			t.Logf("cutover %d: agent killed %s after the commit", i, at.Round(time.Millisecond))
			d = w.start()
		}
		converged(c, img, 2*time.Minute)
		t.Logf("cutover %d to %s converged after %s", i, c[:12], time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	reloads = w.nginx.Reloads(t) - reloads
	gs := g.finish()
	wrk.Process.Signal(syscall.SIGINT)
	wrk.Wait()
	d.kill()
	ws := parseWrk(t, wrkOut.String())
	t.Logf("%d cutovers, %d with the agent killed, %d nginx reloads", cutovers, killed, reloads)
	t.Logf("wrk: %d requests, %d non-2xx, socket errors: connect %d, read %d, write %d, timeout %d",
		ws.requests, ws.status, ws.connect, ws.read, ws.write, ws.timeout)
	t.Logf("Go client: %d requests, %d errors, %d non-2xx", gs.sent, gs.errors, gs.status)

	if reloads > cutovers {
		t.Errorf("%d nginx reloads for %d cutovers: more than one per switch", reloads, cutovers)
	}
	if ws.requests == 0 || ws.status != 0 || ws.connect != 0 || ws.write != 0 || ws.timeout != 0 {
		t.Errorf("wrk saw errors beyond what a reload costs:\n%s", wrkOut.String())
	}
	if bound := wrkConns * reloads; ws.read > bound {
		t.Errorf("wrk: %d read errors, more than %d connections × %d reloads", ws.read, wrkConns, reloads)
	}
	if gs.sent == 0 || gs.errors != 0 || gs.status != 0 {
		t.Errorf("Go client: %d errors and %d non-2xx answers in %d requests (%v)", gs.errors, gs.status, gs.sent, gs.firstErr)
	}
}

// goLoad sends GETs with one keep-alive http.Client from several
// goroutines and counts transport errors and non-2xx answers.
type goLoad struct {
	sent, errors, status atomic.Int64
	firstErr             atomic.Value
	stop                 chan struct{}
	wg                   sync.WaitGroup
}

type goStats struct {
	sent, errors, status int64
	firstErr             any
}

func startGoLoad(url string, workers int) *goLoad {
	l := &goLoad{stop: make(chan struct{})}
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}, Timeout: 10 * time.Second}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.sent.Add(1)
				resp, err := c.Get(url)
				if err != nil {
					l.errors.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					l.status.Add(1)
					l.firstErr.CompareAndSwap(nil, resp.Status)
				}
			}
		}()
	}
	return l
}

func (l *goLoad) finish() goStats {
	close(l.stop)
	l.wg.Wait()
	return goStats{sent: l.sent.Load(), errors: l.errors.Load(), status: l.status.Load(), firstErr: l.firstErr.Load()}
}

type wrkStats struct {
	requests, status, connect, read, write, timeout int
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkStatus   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads wrk's summary; the error lines appear only when there
// were errors.
func parseWrk(t *testing.T, out string) wrkStats {
	t.Helper()
	var s wrkStats
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in wrk's output:\n%s", out)
	}
	s.requests, _ = strconv.Atoi(m[1])
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		s.connect, _ = strconv.Atoi(m[1])
		s.read, _ = strconv.Atoi(m[2])
		s.write, _ = strconv.Atoi(m[3])
		s.timeout, _ = strconv.Atoi(m[4])
	}
	if m := wrkStatus.FindStringSubmatch(out); m != nil {
		s.status, _ = strconv.Atoi(m[1])
	}
	return s
}
