package forge

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
)

// hostileClient is a Gitea client of a server answering with h.
func hostileClient(t *testing.T, h http.HandlerFunc) *Client { return serverClient(t, Gitea, h) }

// serverClient is a client of kind for a server answering with h, its
// token "sekrit-token".
func serverClient(t *testing.T, kind Kind, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	tf := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tf, []byte("sekrit-token"), 0o600)
	c, err := New(Config{Type: kind, APIURL: srv.URL + "/api", Repo: "o/r", TokenFile: tf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestClient_AbsurdWaitsAreCapped: a forge (or a proxy before it) naming
// a wait of 10⁹ seconds, a date in 2100 or a reset in a century silences
// the statuses for at most an hour — GitHub's longest window — not a
// year or a day.
func TestClient_AbsurdWaitsAreCapped(t *testing.T) {
	for name, set := range map[string]func(h http.Header){
		"Retry-After 1e9 s": func(h http.Header) { h.Set("Retry-After", "1000000000") },
		"Retry-After 2100":  func(h http.Header) { h.Set("Retry-After", "Fri, 01 Jan 2100 00:00:00 GMT") },
		"reset in 100 years": func(h http.Header) {
			h.Set("X-RateLimit-Remaining", "0")
			h.Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().AddDate(100, 0, 0).Unix(), 10))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := hostileClient(t, func(w http.ResponseWriter, r *http.Request) {
				set(w.Header())
				w.WriteHeader(http.StatusTooManyRequests)
			})
			err := c.SetStatus(context.Background(), ghSHA, Status{State: Success, Context: "berth/prod"})
			var rl *RateLimitedError
			if !errors.As(err, &rl) || !failure.IsOutage(err) {
				t.Fatalf("want a rate limit, got %v", err)
			}
			if d := time.Until(rl.Until); d > time.Hour+time.Minute {
				t.Errorf("waits %s", d.Round(time.Minute))
			}
		})
	}
}

// TestClient_HostileAnswersAreErrorsNeverPanics: bodies that are huge,
// not JSON, JSON of the wrong shape, or status codes no forge sends are
// errors, bounded and one line, naming no token.
func TestClient_HostileAnswersAreErrorsNeverPanics(t *testing.T) {
	huge := strings.Repeat("x", 8<<20)
	for name, tc := range map[string]struct {
		status  int
		body    string
		outage  bool
		refused bool
	}{
		"huge message":        {400, `{"message":"` + huge + `"}`, false, true},
		"huge success":        {200, `[` + strings.Repeat(`{"number":1},`, 1<<20) + `{}]`, true, false},
		"not JSON":            {200, "<html>hello</html>", true, false},
		"wrong shape":         {200, `{"number":"one"}`, true, false},
		"message object":      {422, `{"message":{"a":["\u001b[31mred\n@admins"]}}`, false, true},
		"status 999":          {999, `{}`, true, false},
		"status 304":          {304, ``, false, false},
		"status 500 of HTML":  {502, "<html>bad gateway\r\n</html>", true, false},
		"message with token?": {401, `{"message":"sekrit-token"}`, false, true},
	} {
		t.Run(name, func(t *testing.T) {
			c := hostileClient(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body))
			})
			_, err := c.FindPR(context.Background(), PromoteBranch("a", "b"), "main")
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if len(msg) > 600 || strings.ContainsAny(msg, "\n\r\x1b") {
				t.Errorf("error not bounded to one line: %d bytes: %.200q", len(msg), msg)
			}
			if failure.IsOutage(err) != tc.outage || Refused(err) != tc.refused {
				t.Errorf("outage %t refused %t: %v", failure.IsOutage(err), Refused(err), err)
			}
		})
	}
}
