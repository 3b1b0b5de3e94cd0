package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Live updates over Server-Sent Events: /events?scope=S sends the
// fingerprint of what a page of scope S shows when a stream opens and
// whenever it changes; the page's script fetches itself again when it
// differs from the one it was drawn with. The fingerprint is cheap and
// never waits: for this host, a few stats of the state dir per env (the
// journal's and the job store's directories change with every record
// written) and the pass in flight; for the fleet, etcd's revision as last
// read (a read of it starts in the background when it is older than
// fpEvery: a page is never held by etcd). It also moves every fpBucket,
// so the containers' health and a running deploy's bar are redrawn
// without a write.

const (
	// fpEvery is how often a stream checks the fingerprint.
	fpEvery = 2 * time.Second
	// fpBucket bounds how stale a page gets when nothing is written.
	fpBucket = 30 * time.Second
	// streamFor ends a stream after a while: the browser reconnects by
	// itself (and a proxy in between never sees an endless answer).
	streamFor = 10 * time.Minute
	// maxStreams bounds the open streams; beyond it /events answers 503
	// and the page falls back to refreshing.
	maxStreams = 64
)

// The scopes of the live updates.
const (
	scopeHost  = "host"
	scopeFleet = "fleet"
)

type liveHub struct {
	mu      sync.Mutex
	streams int
	stopped chan struct{}
	fps     map[string]fpCache
}

type fpCache struct {
	fp string
	at time.Time
}

func (h *liveHub) done() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped == nil {
		h.stopped = make(chan struct{})
	}
	return h.stopped
}

func (h *liveHub) stop() {
	done := h.done()
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-done:
	default:
		close(h.stopped)
	}
}

// fingerprint is what a page of scope shows, hashed; shared by every
// stream for fpEvery.
func (s *Server) fingerprint(scope string) string {
	now := s.now()
	s.live.mu.Lock()
	if c, ok := s.live.fps[scope]; ok && now.Sub(c.at) < fpEvery {
		s.live.mu.Unlock()
		return c.fp
	}
	s.live.mu.Unlock()
	sum := sha256.New()
	fmt.Fprintf(sum, "%d\n", now.Truncate(fpBucket).Unix())
	if scope == scopeFleet {
		if f := s.Fleet; f != nil {
			f.stamp(sum, now)
		}
	} else if l := s.Local; l != nil {
		for i := range l.Envs {
			e := &l.Envs[i]
			statInto(sum, filepath.Join(e.Dir, "state.json"))
			statInto(sum, e.JournalDir)
			if e.Jobs != nil {
				statInto(sum, filepath.Join(e.Jobs.Dir, "jobs.json"))
				runs := filepath.Join(e.Jobs.Dir, "runs")
				if ents, err := os.ReadDir(runs); err == nil {
					for _, d := range ents {
						statInto(sum, filepath.Join(runs, d.Name()))
					}
				}
			}
			if e.Agent != nil {
				if p := e.Agent().Pass; p != nil {
					fmt.Fprintf(sum, "pass %s %s %s\n", p.Commit, p.Phase, p.Waiting)
				}
			}
		}
	}
	fp := hex.EncodeToString(sum.Sum(nil)[:12])
	s.live.mu.Lock()
	if s.live.fps == nil {
		s.live.fps = map[string]fpCache{}
	}
	s.live.fps[scope] = fpCache{fp: fp, at: now}
	s.live.mu.Unlock()
	return fp
}

func statInto(w interface{ Write([]byte) (int, error) }, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		fmt.Fprintf(w, "%s -\n", path)
		return
	}
	fmt.Fprintf(w, "%s %d %d\n", path, fi.ModTime().UnixNano(), fi.Size())
}

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	csp := s.pageSet().csp
	s.live.mu.Lock()
	if s.live.streams >= maxStreams {
		s.live.mu.Unlock()
		secure(w.Header(), csp)
		http.Error(w, "too many live pages open; this one refreshes instead", http.StatusServiceUnavailable)
		return
	}
	s.live.streams++
	s.live.mu.Unlock()
	defer func() {
		s.live.mu.Lock()
		s.live.streams--
		s.live.mu.Unlock()
	}()
	h := w.Header()
	secure(h, csp)
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	rc := http.NewResponseController(w)
	send := func(msg string) bool {
		// The listener's write timeout is for pages: each event extends it.
		_ = rc.SetWriteDeadline(time.Now().Add(15 * time.Second))
		if _, err := fmt.Fprint(w, msg); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	ctx := r.Context()
	scope := scopeHost
	if s.Local == nil || (s.Fleet != nil && r.URL.Query().Get("scope") == scopeFleet) {
		scope = scopeFleet
	}
	last := s.fingerprint(scope)
	if !send("retry: 5000\n\nevent: fp\ndata: " + last + "\n\n") {
		return
	}
	tick := time.NewTicker(fpEvery)
	defer tick.Stop()
	end := time.NewTimer(streamFor)
	defer end.Stop()
	stopped := s.live.done()
	quiet := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-stopped:
			return
		case <-end.C:
			return
		case <-tick.C:
		}
		fp := s.fingerprint(scope)
		msg := ""
		quiet++
		switch {
		case fp != last:
			last, quiet = fp, 0
			msg = "event: fp\ndata: " + fp + "\n\n"
		case time.Duration(quiet)*fpEvery >= 20*time.Second:
			quiet, msg = 0, ": keep-alive\n\n"
		}
		if msg != "" && !send(msg) {
			return
		}
	}
}
