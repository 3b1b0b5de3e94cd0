package ui

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/envs"
)

// Server serves the page. Local is this host (the agent's listener); Fleet
// the fleet read from etcd (berth ui, or an agent in a fleet). At least
// one must be set. Nothing is parsed or allocated until the first request.
type Server struct {
	Local *Local
	Fleet *Fleet
	Log   hclog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AnyHost answers requests for any Host name; without it, only an
	// IP, localhost or a unix socket (rebind.go).
	AnyHost bool

	// mu guards what the page keeps between requests (idle.go).
	mu      sync.Mutex
	pages   *pageSet
	used    time.Time
	free    *time.Timer
	muxOnce sync.Once
	mux     *http.ServeMux
	journal journalCache
	live    liveHub
}

// Handler routes the page's views. Mount it at "/" (the API's own paths
// are more specific and win).
func (s *Server) Handler() http.Handler { return s }

// ServeHTTP serves a view; the routes are made on the first request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.hostAllowed(r) {
		s.misdirected(w)
		return
	}
	s.muxOnce.Do(func() { s.mux = s.routes() })
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	if s.Local != nil {
		mux.HandleFunc("GET /{$}", s.serveHost)
		mux.HandleFunc("GET /history", s.serveHistory)
		mux.HandleFunc("GET /deploy/{env}/{id}", s.serveDeploy)
		mux.HandleFunc("GET /jobs/{env}/{job}", s.serveJob)
		mux.HandleFunc("GET /jobs/{env}/{job}/{run}", s.serveJob)
	}
	if s.Fleet != nil {
		if s.Local == nil {
			mux.HandleFunc("GET /{$}", s.serveFleet)
		}
		mux.HandleFunc("GET /fleet", s.serveFleet)
		mux.HandleFunc("GET /fleet/host/{env}/{host}", s.serveFleetHost)
		mux.HandleFunc("GET /fleet/jobs/{env}/{job}", s.serveFleetJob)
	}
	mux.HandleFunc("GET /events", s.serveEvents)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.notFound(w, r, "no such page")
	})
	return mux
}

// Stop ends the live-update streams (the server is shutting down: an
// open stream would keep it waiting).
func (s *Server) Stop() { s.live.stop() }

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() hclog.Logger {
	if s.Log == nil {
		return hclog.NewNullLogger()
	}
	return s.Log
}

// nav is the links every page shows.
func (s *Server) nav(current string) []link {
	var out []link
	if s.Local != nil {
		out = append(out, link{Text: "Host", Href: href()}, link{Text: "History", Href: href("history")})
	}
	if s.Fleet != nil {
		h := href("fleet")
		if s.Local == nil {
			h = href()
		}
		out = append(out, link{Text: "Fleet", Href: h})
	}
	for i := range out {
		out[i].Current = out[i].Text == current
	}
	return out
}

// render writes one page with the security headers.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title, current string, body any) {
	p := s.pageSet()
	scope := s.scopeOf(name)
	l := layout{Title: title, Nav: s.nav(current), Now: s.now().UTC(), Refresh: refreshSeconds, Body: body, Scope: scope,
		FP: s.fingerprint(scope)}
	var buf bytes.Buffer
	if err := p.execute(&buf, name, l); err != nil {
		s.log().Error("render page", "page", name, "error", err)
		secure(w.Header(), p.csp)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	secure(h, p.csp)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// scopeOf is what the page name shows: the fleet (read from etcd) or
// this host (its files); each has its own live-update fingerprint.
func (s *Server) scopeOf(name string) string {
	if s.Local == nil || strings.HasPrefix(name, "fleet") {
		return scopeFleet
	}
	return scopeHost
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, what string) {
	s.render(w, r, http.StatusNotFound, "notfound", "Not found", "", clean(what))
}

func (s *Server) serveHost(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "host", "berth: "+clean(s.Local.Host), "Host", s.hostPage(r.Context(), s.now()))
}

func (s *Server) serveHistory(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("env")
	if name == "" && len(s.Local.Envs) > 0 {
		name = s.Local.Envs[0].Name
	}
	e := s.env(name)
	if e == nil {
		s.notFound(w, r, "no env "+name+" on this host")
		return
	}
	v, err := s.historyPage(e, r.URL.Query(), s.now())
	if err != nil {
		s.fail(w, err)
		return
	}
	s.render(w, r, http.StatusOK, "history", "History of "+clean(e.Name), "History", v)
}

func (s *Server) serveDeploy(w http.ResponseWriter, r *http.Request) {
	e := s.env(r.PathValue("env"))
	if e == nil {
		s.notFound(w, r, "no env "+r.PathValue("env")+" on this host")
		return
	}
	v, err := s.deployPage(e, r.PathValue("id"), s.now())
	if err != nil {
		s.fail(w, err)
		return
	}
	if v == nil {
		s.notFound(w, r, "no deploy "+r.PathValue("id")+" in the journal of "+e.Name)
		return
	}
	s.render(w, r, http.StatusOK, "deploy", "Deploy "+v.ID, "History", v)
}

func (s *Server) serveJob(w http.ResponseWriter, r *http.Request) {
	e := s.env(r.PathValue("env"))
	job, run := r.PathValue("job"), r.PathValue("run")
	// Names reach the job store's paths: only what the store itself
	// accepts (no separators, no dot-dot).
	if e == nil || !envs.ValidJobName(job) || (run != "" && !validRunID(run)) {
		s.notFound(w, r, "no such job or run")
		return
	}
	v, err := s.jobPageOf(e, job, run)
	if err != nil {
		s.fail(w, err)
		return
	}
	if v == nil {
		s.notFound(w, r, "no job "+job+" (or no such run) in "+e.Name)
		return
	}
	s.render(w, r, http.StatusOK, "job", "Job "+v.Job.Name, "Host", v)
}

// validRunID accepts a job store's run ids (jobs.NewID): letters,
// digits, '-', '_' and '.', never starting with a dot.
func validRunID(id string) bool {
	if id == "" || len(id) > 64 || id[0] == '.' {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (s *Server) serveFleet(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "fleet", "berth fleet", "Fleet", s.fleetPage(r.Context(), r.URL.Query(), s.now()))
}

func (s *Server) serveFleetHost(w http.ResponseWriter, r *http.Request) {
	env, host := r.PathValue("env"), r.PathValue("host")
	v, _ := s.fleetHostPage(r.Context(), env, host)
	if v == nil {
		s.notFound(w, r, "no host "+host+" in the fleet of "+env)
		return
	}
	s.render(w, r, http.StatusOK, "fleethost", "Host "+clean(host), "Fleet", v)
}

func (s *Server) serveFleetJob(w http.ResponseWriter, r *http.Request) {
	env, job := r.PathValue("env"), r.PathValue("job")
	v, _ := s.fleetJobPage(r.Context(), env, job)
	if v == nil {
		s.notFound(w, r, "no job "+job+" in the fleet of "+env)
		return
	}
	s.render(w, r, http.StatusOK, "fleetjob", "Job "+clean(job), "Fleet", v)
}

// fail answers an error reading the host's files: logged, and shown
// without detail (a path or an errno is for the log).
func (s *Server) fail(w http.ResponseWriter, err error) {
	s.log().Error("status page", "error", err)
	secure(w.Header(), s.pageSet().csp)
	http.Error(w, "the agent's state could not be read; see its log", http.StatusInternalServerError)
}
