package lb

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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
		// inflight counts the clients' requests: HAProxy's own health
		// checks (HTTP/1.0 from option httpchk) go on until a server is
		// in maintenance, and one in progress then is not a request the
		// drain failed to wait for.
		if r.ProtoMajor != 1 || r.ProtoMinor != 0 {
			a.inflight.Add(1)
			defer a.inflight.Add(-1)
		}
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
