package ui

import "time"

// What the page keeps between requests — the parsed templates, the
// journal's decoded records, the fleet's last read and the live updates'
// fingerprints — is made on the first request and freed once nobody has
// requested a page for idleFree and no live stream is open: an agent
// someone looked at once goes back to what it was before (the next
// request parses and reads again, some 20 ms).

// idleFree is how long the page keeps what it made after the last request.
const idleFree = 5 * time.Minute

// freeLater arms the timer that frees the page (s.mu held).
func (s *Server) freeLater() {
	if s.free == nil {
		s.free = time.AfterFunc(idleFree, s.freeIdle)
	}
}

// freeIdle frees what the page keeps, unless it was used within idleFree
// or a stream is open; then it looks again later.
func (s *Server) freeIdle() {
	s.mu.Lock()
	s.live.mu.Lock()
	streams := s.live.streams
	s.live.mu.Unlock()
	if idle := time.Since(s.used); idle < idleFree || streams > 0 {
		s.free.Reset(max(idleFree-idle, time.Minute))
		s.mu.Unlock()
		return
	}
	s.pages, s.free = nil, nil
	s.mu.Unlock()
	// Outside s.mu: a request meanwhile parses anew and reads again.
	s.journal.forget()
	s.live.mu.Lock()
	s.live.fps = nil
	s.live.mu.Unlock()
	if s.Fleet != nil {
		s.Fleet.forget()
	}
}

// built says whether the page holds its parsed templates.
func (s *Server) built() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pages != nil
}
