// Package api is the agent's local HTTP API, on a loopback address or a
// unix socket: health, the status/history/jobs JSON the CLI prints,
// Prometheus metrics, Go's profiles under /debug/pprof/, and the Git
// webhook that triggers a poll; every other GET goes to the status page
// (package ui) when one is set.
package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/net/netutil"

	"berth.dev/berth/internal/localname"
	"berth.dev/berth/internal/metrics"
)

// MaxHookBody is the largest webhook body accepted.
const MaxHookBody = 1 << 20

// Server serves the API. Every func field is optional: a nil one answers 404.
type Server struct {
	Status  func(ctx context.Context) (any, error)
	History func(ctx context.Context) (any, error)
	Jobs    func(ctx context.Context) (any, error)
	// Fleet is /api/fleet: every host of the env's fleet (nil without a
	// fleet).
	Fleet   func(ctx context.Context) (any, error)
	Metrics *metrics.Registry
	// BeforeScrape, when set, refreshes values read from elsewhere.
	BeforeScrape func()
	// WebhookSecret returns the shared secret (read from its file on each
	// call, so rotating it needs no restart). Nil: /hooks/git is off.
	WebhookSecret func() ([]byte, error)
	// Trigger asks for a check now; it must not block (bursts collapse).
	Trigger func()
	// Page, when set, serves every GET the API's own paths do not: the
	// status page (package ui). PageStop is called when the server shuts
	// down (it ends the page's live-update streams).
	Page     http.Handler
	PageStop func()
	Log      hclog.Logger

	hooks *metrics.Family
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	if s.Log == nil {
		s.Log = hclog.NewNullLogger()
	}
	if s.Metrics != nil {
		s.hooks = s.Metrics.Counter("berth_webhook_requests_total", "Git webhook calls by result.", "result")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	for path, f := range map[string]func(context.Context) (any, error){"/api/status": s.Status, "/api/history": s.History, "/api/jobs": s.Jobs, "/api/fleet": s.Fleet} {
		if f != nil {
			mux.HandleFunc("GET "+path, s.jsonHandler(f))
		}
	}
	if s.Metrics != nil {
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			if s.BeforeScrape != nil {
				s.BeforeScrape()
			}
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			s.Metrics.WriteText(w)
		})
	}
	if s.WebhookSecret != nil {
		mux.HandleFunc("POST /hooks/git", s.hook)
	}
	// Profiles for finding a leak in a running agent (heap, goroutine, …).
	// Listen serves only loopback and unix sockets, so they never leave the
	// host; a CPU profile must end within WriteTimeout (?seconds=20).
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	if s.Page != nil {
		mux.Handle("GET /", s.Page)
	}
	return localOnly(mux)
}

// localOnly refuses a request addressed to a name other than localhost or
// an IP (internal/localname: a web page rebinding its own name to the
// loopback address must not read status, history, job output or
// profiles). The Git webhook is exempt: it comes through whatever proxy
// the forge reaches, and its signature, not its name, is what admits it.
func localOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hooks/git" && !localname.Allowed(r) {
			http.Error(w, localname.Refusal, http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// queryKey carries a request's query parameters to the func answering it.
type queryKey struct{}

// Query returns the query parameters of the request a Status, History or
// Jobs func answers (?env=NAME).
func Query(ctx context.Context) url.Values {
	q, _ := ctx.Value(queryKey{}).(url.Values)
	return q
}

// BadRequest marks an error of a Status, History or Jobs func as the
// request's fault (a 400, not a 500).
type BadRequest struct{ Err error }

func (e BadRequest) Error() string { return e.Err.Error() }
func (e BadRequest) Unwrap() error { return e.Err }

func (s *Server) jsonHandler(f func(context.Context) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(context.WithValue(r.Context(), queryKey{}, r.URL.Query()))
		var bad BadRequest
		if errors.As(err, &bad) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	}
}

// hook verifies a Git host's webhook and triggers a poll. The payload is
// never used for what to deploy: the poll reads the branch itself.
func (s *Server) hook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxHookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.count("too_large")
			http.Error(w, "body over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	secret, err := s.WebhookSecret()
	if err != nil || len(secret) == 0 {
		s.Log.Error("webhook secret unreadable: refusing webhooks", "error", err)
		s.count("unauthorized")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !Verify(r.Header, body, secret) {
		s.count("unauthorized")
		s.Log.Warn("webhook refused: missing or invalid signature", "remote", r.RemoteAddr)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	s.count("accepted")
	s.Log.Info("webhook accepted: poll triggered", "event", firstOf(r.Header, "X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event"))
	if s.Trigger != nil {
		s.Trigger()
	}
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, "poll triggered\n")
}

func firstOf(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

func (s *Server) count(result string) {
	if s.hooks != nil {
		s.hooks.Inc(result)
	}
}

// Verify checks a webhook against secret: GitHub's X-Hub-Signature-256
// ("sha256=" + hex HMAC-SHA256 of the body), Gitea's and Forgejo's
// X-Gitea-Signature / X-Forgejo-Signature (hex HMAC-SHA256), or GitLab's
// X-Gitlab-Token (the secret itself). Comparisons are constant-time.
func Verify(h http.Header, body, secret []byte) bool {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	hexEqual := func(got string) bool {
		b, err := hex.DecodeString(strings.TrimSpace(got))
		return err == nil && hmac.Equal(b, want)
	}
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		rest, ok := strings.CutPrefix(sig, "sha256=")
		return ok && hexEqual(rest)
	}
	for _, name := range []string{"X-Gitea-Signature", "X-Forgejo-Signature"} {
		if sig := h.Get(name); sig != "" {
			return hexEqual(sig)
		}
	}
	if tok := h.Get("X-Gitlab-Token"); tok != "" {
		// ConstantTimeCompare returns at once on a length mismatch, which
		// tells the length of the secret: compare digests of equal size.
		a, b := sha256.Sum256([]byte(tok)), sha256.Sum256(secret)
		return subtle.ConstantTimeCompare(a[:], b[:]) == 1
	}
	return false
}

// SecretFile reads a webhook secret file on each call (trailing newline
// trimmed).
func SecretFile(path string) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
}

// Listen opens addr: "unix:/path" (a socket made 0660, replacing a stale
// one) or a loopback host:port. Anything else is refused: the API has no
// authentication of its own beyond the webhook's signature.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := removeStaleSocket(path); err != nil {
			return nil, err
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o660); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	}
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}

// removeStaleSocket removes what is at path only when it is a socket no
// process answers on (left by an agent that was killed); any other file,
// or a live socket, is left alone and refused.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("listen %s: a file that is not a socket is there; refusing to remove it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("listen %s: another process is serving on this socket", path)
	}
	return os.Remove(path)
}

// CheckLoopback says whether addr is a loopback host:port.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address (use 127.0.0.1:PORT, [::1]:PORT or unix:/path)", addr)
	}
	return nil
}

// MaxConns bounds the connections a listener of berth serves at once
// (the local API, `berth ui`): more wait in the kernel's queue, so a local
// process that opens thousands costs the agent no more than this many
// goroutines and buffers.
const MaxConns = 128

// Serve serves on l until ctx ends, at most MaxConns connections at once.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	l = netutil.LimitListener(l, MaxConns)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	if s.PageStop != nil {
		srv.RegisterOnShutdown(s.PageStop)
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
