package lb

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// appServer is a backend for the HAProxy tests: it answers its name after
// a short pause (so requests are in flight when a switch drains it; the
// query can ask for another pause, ?sleep=1s, or status, ?status=500), counts
// requests in flight and served, and the connections open to it.
type appServer struct {
	name     string
	addr     string
	delay    time.Duration
	status   atomic.Int32 // answer status; 200 unless set
	inflight atomic.Int64
	served   atomic.Int64
	conns    atomic.Int64
	srv      *httptest.Server
}

func newAppServer(t testing.TB, name string, delay time.Duration) *appServer {
	t.Helper()
	a := &appServer{name: name, delay: delay}
	a.status.Store(200)
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.inflight.Add(1)
		defer a.inflight.Add(-1)
		d := a.delay
		if v := r.URL.Query().Get("sleep"); v != "" {
			d, _ = time.ParseDuration(v)
		}
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done(): // the balancer cut the request
				return
			}
		}
		a.served.Add(1)
		status := int(a.status.Load())
		if v := r.URL.Query().Get("status"); v != "" {
			status, _ = strconv.Atoi(v)
		}
		w.WriteHeader(status)
		io.WriteString(w, a.name)
	}))
	a.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			a.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			a.conns.Add(-1)
		}
	}
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	a.addr = strings.TrimPrefix(a.srv.URL, "http://")
	return a
}

// load sends requests through url from several goroutines over keep-alive
// connections until stopped, counting every failure: transport errors
// (refused, reset, EOF, timeout) and answers other than 200.
type load struct {
	sent, failed, connErrs, badStatus atomic.Int64
	mu                                sync.Mutex
	samples                           []string
	stop                              chan struct{}
	wg                                sync.WaitGroup
}

func startLoad(t testing.TB, url string, workers int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
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
				resp, err := client.Get(url)
				if err != nil {
					l.failed.Add(1)
					l.connErrs.Add(1)
					l.sample(err.Error())
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					l.failed.Add(1)
					l.connErrs.Add(1)
					l.sample("body: " + err.Error())
				case resp.StatusCode != 200:
					l.failed.Add(1)
					l.badStatus.Add(1)
					l.sample(resp.Status)
				}
			}
		}()
	}
	t.Cleanup(l.finish)
	return l
}

func (l *load) sample(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) < 5 {
		l.samples = append(l.samples, s)
	}
}

// finish stops the load and waits for the requests in flight.
func (l *load) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d requests, %d failed (%d connection errors, %d non-200) %v",
		l.sent.Load(), l.failed.Load(), l.connErrs.Load(), l.badStatus.Load(), l.samples)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
