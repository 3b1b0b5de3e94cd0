package reconcile

import (
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// load sends GETs through nginx from workers goroutines until stopped and
// counts what failed (transport errors and non-200 answers).
type load struct {
	sent, failed atomic.Int64
	transport    atomic.Int64 // of failed: no answer (refused, reset, EOF)
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startLoad(url string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	// Idle connections close after 5 s: a connection Go's client dialled
	// and never used holds an old nginx worker until nginx's
	// client_header_timeout (docs/benchmarks.md, the drain outlier).
	tr := &http.Transport{MaxIdleConnsPerHost: workers, IdleConnTimeout: 5 * time.Second}
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
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
					l.failed.Add(1)
					l.transport.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					l.failed.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (sent, failed int64) {
	close(l.stop)
	l.wg.Wait()
	return l.sent.Load(), l.failed.Load()
}

func report(b *testing.B, sent, failed int64, cutover time.Duration) {
	b.ReportMetric(float64(sent)/float64(b.N), "requests/op")
	b.ReportMetric(float64(failed)/float64(b.N), "failed/op")
	b.ReportMetric(100*float64(failed)/float64(max(sent, 1)), "failed-%")
	b.ReportMetric(cutover.Seconds()/float64(b.N), "s-cutover/op")
}

func waitServing(b *testing.B, url string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("%s not serving", url)
}

// wrkLoad is wrk (one thread, 8 keep-alive connections) beside the Go
// clients: it does not retry, so every socket error a reload or a drain
// causes shows (Go's client resends a GET whose reused connection closed
// before an answer).
type wrkLoad struct {
	cmd *exec.Cmd
	out strings.Builder
}

// wrkStats are wrk's counts: requests, non-2xx answers, socket errors.
type wrkStats struct{ requests, non2xx, connect, read, write, timeout int64 }

func (w wrkStats) add(o wrkStats) wrkStats {
	return wrkStats{w.requests + o.requests, w.non2xx + o.non2xx, w.connect + o.connect, w.read + o.read, w.write + o.write, w.timeout + o.timeout}
}

const wrkConns = 8

func startWrk(b *testing.B, url string) *wrkLoad {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatal("wrk not installed (scripts/bench installs it)")
	}
	w := &wrkLoad{cmd: exec.Command("wrk", "-t1", "-c"+strconv.Itoa(wrkConns), "-d600s", "--timeout", "10s", url)}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.cmd.Process.Kill() })
	return w
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkStatus   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// finish stops wrk (SIGINT: it prints its summary) and reads its counts.
func (w *wrkLoad) finish(b *testing.B) wrkStats {
	w.cmd.Process.Signal(syscall.SIGINT)
	w.cmd.Wait()
	out := w.out.String()
	num := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no summary in wrk's output:\n%s", out)
	}
	s := wrkStats{requests: num(m[1])}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		s.connect, s.read, s.write, s.timeout = num(m[1]), num(m[2]), num(m[3]), num(m[4])
	}
	if m := wrkStatus.FindStringSubmatch(out); m != nil {
		s.non2xx = num(m[1])
	}
	return s
}

func reportWrk(b *testing.B, s wrkStats) {
	n := float64(b.N)
	b.ReportMetric(float64(s.requests)/n, "wrk-requests/op")
	b.ReportMetric(float64(s.non2xx)/n, "wrk-non2xx/op")
	b.ReportMetric(float64(s.connect+s.write+s.timeout)/n, "wrk-connect+write+timeout-errs/op")
	b.ReportMetric(float64(s.read)/n, "wrk-read-errs/op")
}
