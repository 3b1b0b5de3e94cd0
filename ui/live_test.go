package ui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"berth.dev/berth/fleet"
)

// streamWriter is a ResponseWriter of an event stream: each flush sends
// what was written since the last one.
type streamWriter struct {
	h    http.Header
	code int
	buf  strings.Builder
	out  chan string
}

func newStreamWriter() *streamWriter {
	return &streamWriter{h: http.Header{}, out: make(chan string, 1000)}
}

func (w *streamWriter) Header() http.Header         { return w.h }
func (w *streamWriter) WriteHeader(code int)        { w.code = code }
func (w *streamWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }
func (w *streamWriter) Flush() {
	w.out <- w.buf.String()
	w.buf.Reset()
}

// openStream starts a stream of path; cancel ends it, done closes when
// the handler returned.
func openStream(s *Server, path string) (w *streamWriter, cancel func(), done chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	w, done = newStreamWriter(), make(chan struct{})
	go func() {
		defer close(done)
		s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil).WithContext(ctx))
	}()
	return w, cancel, done
}

// A viewer holding many streams gets maxStreams of them; the rest are
// told to refresh instead, at once; stopping the server ends them all.
func TestEvents_StreamsAreBoundedAndEndWithTheServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := hostileHost(t)
		s.Now = nil
		var dones []chan struct{}
		for range maxStreams {
			w, _, done := openStream(s, "/events")
			if first := <-w.out; !strings.Contains(first, "event: fp\ndata: ") {
				t.Fatalf("a stream opens with %q", first)
			}
			dones = append(dones, done)
		}
		for range 1000 - maxStreams {
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/events", nil))
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Content-Security-Policy") == "" {
				t.Fatalf("stream %d beyond the bound: %d", maxStreams+1, rec.Code)
			}
		}
		s.Stop()
		for _, d := range dones {
			<-d
		}
	})
}

// A stream sends a new fingerprint within fpEvery of a journal write; a
// stream of the fleet's pages opens at once even when etcd does not
// answer, and follows only etcd (this host's writes do not reload it).
func TestEvents_FollowTheirScope(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, e := hostileHost(t)
		s.Now = nil
		f := &slowFleet{fakeFleet: fakeFleet{envs: []fleet.Overview{threeHosts("v1")}}}
		s.Fleet = &Fleet{Reader: f, Envs: []string{"prod"}, Only: true}
		host, cancelHost, doneHost := openStream(s, "/events")
		fl, cancelFleet, doneFleet := openStream(s, "/events?scope=fleet")
		start := time.Now()
		<-host.out
		<-fl.out
		if d := time.Since(start); d > 0 {
			t.Errorf("the streams opened after %s", d)
		}
		time.Sleep(time.Second)
		e.write(t, deployRecord("20261206T110000.000Z-0001", "d00d", "v4", t0.Add(time.Hour)))
		time.Sleep(fpEvery)
		synctest.Wait()
		if len(host.out) != 1 || len(fl.out) != 0 {
			t.Errorf("after a journal write: %d events on the host's stream (want 1), %d on the fleet's (want 0)", len(host.out), len(fl.out))
		}
		cancelHost()
		cancelFleet()
		<-doneHost
		<-doneFleet
		time.Sleep(fleetTimeout) // the read of etcd's revision gives up
	})
}
