package forge

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// A contract is a recorded conversation with a forge's API, written from
// its documentation (paths, auth headers, payloads, status codes,
// rate-limit headers): GitHub and GitLab have no server that runs here, so
// the client is held to what their docs say.
type contract struct {
	Source    string     `json:"source"` // the documentation page
	Exchanges []exchange `json:"exchanges"`
}

type exchange struct {
	Request struct {
		Method  string            `json:"method"`
		Path    string            `json:"path"` // escaped, as sent
		Query   map[string]string `json:"query,omitempty"`
		Headers map[string]string `json:"headers,omitempty"`
		Body    json.RawMessage   `json:"body,omitempty"`
	} `json:"request"`
	Response struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers,omitempty"`
		Body    json.RawMessage   `json:"body,omitempty"`
	} `json:"response"`
}

// replay serves a contract's exchanges in order and fails the test on any
// request that differs from the recorded one (headers and query keys
// listed must match; the JSON body must be equal).
type replay struct {
	t    *testing.T
	name string
	mu   sync.Mutex
	ex   []exchange
	next int
}

func loadContract(t *testing.T, name string) *replay {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "contract", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var c contract
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if c.Source == "" || len(c.Exchanges) == 0 {
		t.Fatalf("%s: a contract names its source and holds exchanges", name)
	}
	return &replay{t: t, name: name, ex: c.Exchanges}
}

func (r *replay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next >= len(r.ex) {
		r.t.Errorf("%s: unexpected request %s %s", r.name, req.Method, req.URL.EscapedPath())
		http.Error(w, "unexpected", http.StatusTeapot)
		return
	}
	e := r.ex[r.next]
	r.next++
	want := e.Request
	if req.Method != want.Method || req.URL.EscapedPath() != want.Path {
		r.t.Errorf("%s #%d: request %s %s, the contract says %s %s", r.name, r.next, req.Method, req.URL.EscapedPath(), want.Method, want.Path)
	}
	for k, v := range want.Query {
		if got := req.URL.Query().Get(k); got != v {
			r.t.Errorf("%s #%d: query %s=%q, the contract says %q", r.name, r.next, k, got, v)
		}
	}
	for k, v := range want.Headers {
		if got := req.Header.Get(k); got != v {
			r.t.Errorf("%s #%d: header %s=%q, the contract says %q", r.name, r.next, k, got, v)
		}
	}
	body, _ := io.ReadAll(req.Body)
	if len(want.Body) > 0 {
		var got, exp any
		if err := json.Unmarshal(body, &got); err != nil {
			r.t.Errorf("%s #%d: body is not JSON: %v", r.name, r.next, err)
		}
		json.Unmarshal(want.Body, &exp)
		if !reflect.DeepEqual(got, exp) {
			r.t.Errorf("%s #%d: body\n%s\nthe contract says\n%s", r.name, r.next, body, want.Body)
		}
	} else if len(body) > 0 {
		r.t.Errorf("%s #%d: unexpected body %s", r.name, r.next, body)
	}
	for k, v := range e.Response.Headers {
		w.Header().Set(k, v)
	}
	if len(e.Response.Body) > 0 {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(e.Response.Status)
	w.Write(e.Response.Body)
}

// done fails the test unless every exchange was used.
func (r *replay) done() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.next != len(r.ex) {
		r.t.Errorf("%s: %d of %d recorded requests were made", r.name, r.next, len(r.ex))
	}
}

// fakeClock is the client's clock in tests: sleeping advances it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func (f *fakeClock) now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.t = f.t.Add(d)
}
func (f *fakeClock) sleep(_ context.Context, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slept = append(f.slept, d)
	f.t = f.t.Add(d)
	return nil
}

// contractClient serves a contract and returns a client of kind k for
// repo against it, with the token "TOKEN" in a file and a fake clock set
// to the contracts' "now" (2026-01-01T00:00:00Z, epoch 1767225600).
func contractClient(t *testing.T, k Kind, repo, name string) (*Client, *replay, *fakeClock, string) {
	t.Helper()
	r := loadContract(t, name)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("TOKEN\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := srv.URL
	switch k {
	case GitLab:
		api += "/api/v4"
	case Gitea:
		api += "/api/v1"
	}
	c, err := New(Config{Type: k, APIURL: api, Repo: repo, TokenFile: tokenFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1767225600, 0)}
	c.now, c.sleep = clock.now, clock.sleep
	return c, r, clock, tokenFile
}
