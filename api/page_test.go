package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The status page gets every GET the API's own paths do not; the API's
// paths stay the API's.
func TestServer_PageServesWhatTheAPIDoesNot(t *testing.T) {
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.URL.Path) })
	h := (&Server{Page: page}).Handler()
	for path, want := range map[string]string{"/": "page /", "/history": "page /history", "/deploy/prod/1": "page /deploy/prod/1", "/healthz": "ok\n"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, localRequest(http.MethodGet, path, nil))
		if got := rec.Body.String(); got != want {
			t.Errorf("GET %s: %q, want %q", path, got, want)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, localRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405 (the page is read-only)", rec.Code)
	}
}
