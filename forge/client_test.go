package forge

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestConfig_ResolvedFromTheRepoURL(t *testing.T) {
	for _, tc := range []struct {
		name, url        string
		typ              Kind
		wantType         Kind
		wantAPI, wantRep string
		wantErr          string
	}{
		{name: "github https", url: "https://github.com/acme/config.git", wantType: GitHub, wantAPI: "https://api.github.com", wantRep: "acme/config"},
		{name: "github scp", url: "git@github.com:acme/config.git", wantType: GitHub, wantAPI: "https://api.github.com", wantRep: "acme/config"},
		{name: "gitlab subgroups", url: "ssh://git@gitlab.com:22/ops/deploy/config.git", wantType: GitLab, wantAPI: "https://gitlab.com/api/v4", wantRep: "ops/deploy/config"},
		{name: "self-hosted gitea on http with a port", url: "http://127.0.0.1:3000/ops/config.git", typ: Gitea, wantType: Gitea, wantAPI: "http://127.0.0.1:3000/api/v1", wantRep: "ops/config"},
		{name: "codeberg", url: "https://codeberg.org/ops/config", wantType: Gitea, wantAPI: "https://codeberg.org/api/v1", wantRep: "ops/config"},
		{name: "unknown host", url: "https://git.example.org/ops/config.git", wantErr: "forge.type"},
		{name: "github enterprise needs api_url", url: "https://ghe.example.org/ops/config.git", typ: GitHub, wantErr: "forge.api_url"},
		{name: "github owner/name only", url: "https://github.com/a/b/c.git", wantErr: "forge.repo"},
		{name: "dot-dot segment", url: "https://gitlab.com/ops/../config.git", wantErr: "forge.repo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Config{Type: tc.typ, RepoURL: tc.url, TokenFile: "/t"}.Resolved()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("want an error naming %s, got %v", tc.wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Type != tc.wantType || c.APIURL != tc.wantAPI || c.Repo != tc.wantRep {
				t.Errorf("got %s %s %s", c.Type, c.APIURL, c.Repo)
			}
		})
	}
	if _, err := (Config{Type: GitHub, APIURL: "https://u:p@api.github.com", Repo: "a/b", TokenFile: "/t"}).Resolved(); err == nil {
		t.Error("credentials in api_url must be refused")
	}
}

func TestOneLine_SafeAndCut(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"live on 3/3 hosts", 140, "live on 3/3 hosts"},
		{"a\nb\r\n\tc", 140, "a b c"},
		{"\x1b]0;title\x07x", 140, "]0;title x"},
		{"bidi \u202eevil\u202c end", 140, "bidi evil end"},
		{"bad \xff utf8", 140, "bad \uFFFD utf8"},
		{"see https://user:secret@host/x", 140, "see https://host/x"},
		{"ééééé", 5, "ééééé"},
		{"ééééé", 4, "ééé…"},
	} {
		if got := OneLine(tc.in, tc.max); got != tc.want {
			t.Errorf("OneLine(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
	long := strings.Repeat("日本", 200)
	if got := OneLine(long, 140); utf8.RuneCountInString(got) != 140 || !strings.HasSuffix(got, "…") {
		t.Errorf("cut to 140 runes: %d", utf8.RuneCountInString(got))
	}
	b := Body("x\x00y\n"+strings.Repeat("z", 100), 50, "\n(cut)")
	if strings.Contains(b, "\x00") || utf8.RuneCountInString(b) != 50 || !strings.HasSuffix(b, "(cut)") {
		t.Errorf("Body: %q", b)
	}
}

// A request to one server that records what it was sent.
type recorder struct {
	mu      sync.Mutex
	headers []http.Header
	status  int
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Clone())
	r.mu.Unlock()
	w.WriteHeader(r.status)
	w.Write([]byte(`{}`))
}

func TestClient_TokenFileIsReadOnEveryUse(t *testing.T) {
	rec := &recorder{status: http.StatusCreated}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	tf := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tf, []byte("first\n"), 0o600)
	c, err := New(Config{Type: Gitea, APIURL: srv.URL + "/api/v1", Repo: "o/r", TokenFile: tf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st := Status{State: Success, Context: "berth/prod"}
	if err := c.SetStatus(ctx, ghSHA, st); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(tf, []byte("second"), 0o600) // rotated
	if err := c.SetStatus(ctx, ghSHA, st); err != nil {
		t.Fatal(err)
	}
	if a, b := rec.headers[0].Get("Authorization"), rec.headers[1].Get("Authorization"); a != "token first" || b != "token second" {
		t.Errorf("tokens sent: %q, %q", a, b)
	}
	os.WriteFile(tf, []byte("two\nlines"), 0o600)
	if err := c.SetStatus(ctx, ghSHA, st); err == nil || strings.Contains(err.Error(), "lines") {
		t.Errorf("a two-line token file: %v", err)
	}
	os.Remove(tf)
	if err := c.SetStatus(ctx, ghSHA, st); err == nil {
		t.Error("a missing token file must fail the request")
	}
	if len(rec.headers) != 2 {
		t.Errorf("%d requests reached the forge, want 2", len(rec.headers))
	}
}

func TestClient_RedirectToAnotherHostIsNotFollowed(t *testing.T) {
	other := &recorder{status: http.StatusOK}
	elsewhere := httptest.NewServer(other)
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	tf := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tf, []byte("sekrit"), 0o600)
	c, err := New(Config{Type: GitLab, APIURL: srv.URL + "/api/v4", Repo: "o/r", TokenFile: tf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.SetStatus(context.Background(), ghSHA, Status{State: Success, Context: "berth/prod"})
	if err == nil {
		t.Error("a redirect answer is not a success")
	}
	if len(other.headers) != 0 {
		t.Errorf("the token went to another host: %v", other.headers)
	}
}

func TestClient_PushesOnlyToPromoteBranchesAndContainedPaths(t *testing.T) {
	c, err := New(Config{Type: Gitea, APIURL: "http://127.0.0.1:1/api/v1", Repo: "o/r", TokenFile: "/nonexistent"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := "7638417db6d59f3c431d3e1f261cc637155684cd"
	for _, cm := range []Commit{
		{Branch: "main", BaseBranch: "main", BaseSHA: base, Files: []FileChange{{Path: "a"}}},
		{Branch: "berth/promote-a-b/../../main", BaseBranch: "main", BaseSHA: base, Files: []FileChange{{Path: "a"}}},
		{Branch: PromoteBranch("a", "b"), BaseBranch: "main", BaseSHA: base, Files: []FileChange{{Path: "../etc/passwd"}}},
		{Branch: PromoteBranch("a", "b"), BaseBranch: "main", BaseSHA: base, Files: []FileChange{{Path: "/abs"}}},
		{Branch: PromoteBranch("a", "b"), BaseBranch: "main", BaseSHA: "HEAD", Files: []FileChange{{Path: "a"}}},
	} {
		if _, err := c.CommitFiles(ctx, cm); err == nil || strings.Contains(err.Error(), "token") {
			t.Errorf("%+v: want a refusal before any request, got %v", cm, err)
		}
	}
	if _, err := c.OpenPR(ctx, NewPR{Head: "main", Base: "release"}); err == nil {
		t.Error("a pull request from a branch berth does not own must be refused")
	}
	if c.Calls() != 0 {
		t.Errorf("%d requests made", c.Calls())
	}
}

func TestBlobID_MatchesGit(t *testing.T) {
	// git hash-object of "hello\n"
	if got := blobID([]byte("hello\n")); got != "ce013625030ba8dba906f756967f9e9ca394464a" {
		t.Errorf("blobID = %s", got)
	}
}
