package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Live updates over Server-Sent Events: /events sends the page's
// fingerprint when a stream opens and whenever it changes; the page's
// script fetches itself again when it differs from the one it was drawn
// with. The fingerprint is cheap: a few stats of the state dir per env
// (the journal's and the job store's directories change with every
// record written) and the pass in flight, or etcd's revision for a
// fleet. It also moves every fpBucket, so the containers' health and a
// running deploy's bar are redrawn without a write.

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

type liveHub struct {
	mu      sync.Mutex
	streams int
	stopped chan struct{}
	fp      string
	fpAt    time.Time
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

// fingerprint is what the page shows, hashed; shared by every stream for
// fpEvery.
func (s *Server) fingerprint(ctx context.Context) string {
	now := s.now()
	s.live.mu.Lock()
	if s.live.fp != "" && now.Sub(s.live.fpAt) < fpEvery {
		fp := s.live.fp
		s.live.mu.Unlock()
		return fp
	}
	s.live.mu.Unlock()
	sum := sha256.New()
	fmt.Fprintf(sum, "%d\n", now.Truncate(fpBucket).Unix())
	if l := s.Local; l != nil {
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
	if f := s.Fleet; f != nil {
		cctx, cancel := context.WithTimeout(ctx, fleetTimeout)
		rev, err := f.Reader.Revision(cctx)
		cancel()
		fmt.Fprintf(sum, "etcd %d %v\n", rev, err != nil)
	}
	fp := hex.EncodeToString(sum.Sum(nil)[:12])
	s.live.mu.Lock()
	s.live.fp, s.live.fpAt = fp, now
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
	last := s.fingerprint(ctx)
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
		fp := s.fingerprint(ctx)
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
