package testenv

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// GitServer serves bare repositories over real smart HTTP (git http-backend
// behind net/http/cgi) and file://. Repositories live under Root.
type GitServer struct {
	Root string
	URL  string // "http://127.0.0.1:PORT", without credentials

	user, pass string

	mu       sync.Mutex
	requests int
	bytes    int64
	arrivals []time.Time
}

// Traffic returns how many requests the HTTP server answered and how many
// response body bytes it sent, since the last ResetTraffic.
func (g *GitServer) Traffic() (requests int, bytes int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests, g.bytes
}

// ResetTraffic zeroes the counters Traffic reports.
func (g *GitServer) ResetTraffic() {
	g.mu.Lock()
	g.requests, g.bytes, g.arrivals = 0, 0, nil
	g.mu.Unlock()
}

// Arrivals returns when each request since the last ResetTraffic
// arrived, in order: the load offered to the server, second by second.
func (g *GitServer) Arrivals() []time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]time.Time(nil), g.arrivals...)
}

// countingWriter counts the body bytes a handler writes.
type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// GitServerOption configures StartGitServer.
type GitServerOption func(*GitServer)

// WithBasicAuth makes the HTTP server require these credentials.
func WithBasicAuth(user, pass string) GitServerOption {
	return func(g *GitServer) { g.user, g.pass = user, pass }
}

// NoGitConfig is the global git config every git command of the tests
// reads: a file in a directory that does not exist. git reads it as empty,
// and a `git config --global` write fails instead of replacing it (with
// GIT_CONFIG_GLOBAL=/dev/null git writes through a lock file and a rename,
// which replaces the host's /dev/null with a regular file).
const NoGitConfig = "/nonexistent/berth-test/gitconfig"

// GitEnv is the environment every git command in tests runs with: no user
// or system config can change what the test sees.
func GitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_GLOBAL="+NoGitConfig,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=berth test", "GIT_AUTHOR_EMAIL=test@berth.invalid",
		"GIT_COMMITTER_NAME=berth test", "GIT_COMMITTER_EMAIL=test@berth.invalid",
		"GIT_TERMINAL_PROMPT=0",
	)
}

// StartGitServer starts a smart-HTTP Git server for the test.
func StartGitServer(t testing.TB, opts ...GitServerOption) *GitServer {
	t.Helper()
	shortSkip(t, "StartGitServer")
	gitBin, err := exec.LookPath("git")
	if err != nil {
		unavailable(t, "git server", err)
	}
	out, err := exec.Command(gitBin, "--exec-path").Output()
	if err != nil {
		unavailable(t, "git server", fmt.Errorf("git --exec-path: %w", err))
	}
	backend := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		unavailable(t, "git server", err)
	}
	g := &GitServer{Root: t.TempDir()}
	for _, o := range opts {
		o(g)
	}
	h := &cgi.Handler{
		Path: backend,
		Env: []string{
			"GIT_PROJECT_ROOT=" + g.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_GLOBAL=" + NoGitConfig,
			"GIT_CONFIG_NOSYSTEM=1",
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.arrivals = append(g.arrivals, time.Now())
		g.mu.Unlock()
		if g.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(g.user)) != 1 ||
				subtle.ConstantTimeCompare([]byte(p), []byte(g.pass)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		cw := &countingWriter{ResponseWriter: w}
		h.ServeHTTP(cw, r)
		g.mu.Lock()
		g.requests++
		g.bytes += cw.n
		g.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// GitRepo is a bare repository on a GitServer plus a work tree that tests
// commit from.
type GitRepo struct {
	Name   string
	Bare   string // path of the bare repository
	Branch string
	server *GitServer
	work   string
}

// NewRepo creates an empty bare repository name.git with default branch
// "main".
func (g *GitServer) NewRepo(t testing.TB, name string) *GitRepo {
	t.Helper()
	r := &GitRepo{Name: name, Bare: filepath.Join(g.Root, name+".git"), Branch: "main", server: g, work: t.TempDir()}
	runGit(t, "", "init", "-q", "--bare", "-b", r.Branch, r.Bare)
	runGit(t, r.Bare, "config", "http.receivepack", "true")
	runGit(t, r.work, "init", "-q", "-b", r.Branch)
	runGit(t, r.work, "remote", "add", "origin", r.Bare)
	return r
}

// HTTPURL is the smart-HTTP clone URL, without credentials.
func (r *GitRepo) HTTPURL() string { return r.server.URL + "/" + r.Name + ".git" }

// AuthHTTPURL is HTTPURL with the server's basic-auth credentials in it.
func (r *GitRepo) AuthHTTPURL() string {
	u, _ := url.Parse(r.HTTPURL())
	if r.server.user != "" {
		u.User = url.UserPassword(r.server.user, r.server.pass)
	}
	return u.String()
}

// FileURL is the file:// clone URL.
func (r *GitRepo) FileURL() string { return "file://" + r.Bare }

// CommitFiles writes files (path → content; "" content deletes the path)
// into the work tree, commits everything with msg, pushes, and returns the
// new commit id.
func (r *GitRepo) CommitFiles(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(r.work, filepath.FromSlash(p))
		if content == "" {
			if err := os.RemoveAll(full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return r.commitAndPush(t, msg)
}

// CommitDir replaces the whole tree with a copy of dir, commits it with
// msg, pushes, and returns the new commit id: one new revision of a config
// repo from a directory on disk.
func (r *GitRepo) CommitDir(t testing.TB, msg, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(r.work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == ".git" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(r.work, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(r.work, os.DirFS(dir)); err != nil {
		t.Fatalf("testenv: copy %s: %v", dir, err)
	}
	return r.commitAndPush(t, msg)
}

func (r *GitRepo) commitAndPush(t testing.TB, msg string) string {
	t.Helper()
	runGit(t, r.work, "add", "-A")
	runGit(t, r.work, "commit", "-q", "--allow-empty", "-m", msg)
	runGit(t, r.work, "push", "-q", "origin", "HEAD:refs/heads/"+r.Branch)
	return r.Head(t)
}

// Head returns the commit id of the work tree's HEAD.
func (r *GitRepo) Head(t testing.TB) string {
	t.Helper()
	return strings.TrimSpace(runGit(t, r.work, "rev-parse", "HEAD"))
}

// WorkDir is the work tree tests commit from (e.g. with go-git, to sign).
func (r *GitRepo) WorkDir() string { return r.work }

// Git runs a git command in the work tree, for what the helpers above do not
// cover (amend and force-push, signed commits, …), and returns its stdout.
func (r *GitRepo) Git(t testing.TB, args ...string) string {
	t.Helper()
	return runGit(t, r.work, args...)
}

func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = GitEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testenv: git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
