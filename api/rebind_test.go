package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// localRequest is a request to the API as a local client sends it: to an
// IP address (httptest's default host, example.com, is a name the API
// refuses).
func localRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.Host = "127.0.0.1:7480"
	return r
}

// A web page that rebinds its own name to 127.0.0.1 reaches the listener
// but gets nothing: every path but the signed webhook answers 421 to a
// name other than localhost or an address.
func TestServer_RefusesARebindingName(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page") })
	s := &Server{Page: page, Status: func(context.Context) (any, error) { return map[string]string{"live": "c1"}, nil }}
	h := s.Handler()
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1:7480", true}, {"[::1]:7480", true}, {"localhost:7480", true}, {"berth.localhost", true}, {"LOCALHOST.", true},
		{"evil.example:7480", false}, {"127.0.0.1.nip.io", false}, {"localhost.evil.example", false},
	} {
		for _, path := range []string{"/", "/api/status", "/healthz", "/debug/pprof/"} {
			r := httptest.NewRequest(http.MethodGet, path, nil)
			r.Host = tc.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if got := rec.Code != http.StatusMisdirectedRequest; got != tc.ok {
				t.Errorf("GET %s with Host %q: %d %q", path, tc.host, rec.Code, strings.TrimSpace(rec.Body.String()))
			}
		}
	}
	// The webhook is admitted by its signature, whatever name the forge's
	// proxy used: an unsigned one is refused as unsigned, not misdirected.
	s.WebhookSecret = func() ([]byte, error) { return []byte("s"), nil }
	s.Trigger = func() {}
	r := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader("{}"))
	r.Host = "berth.example.org"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("unsigned webhook through a proxy's name: %d, want 401", rec.Code)
	}
}
