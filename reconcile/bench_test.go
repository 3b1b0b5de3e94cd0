package reconcile

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
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
