package testenv

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Gitea is a real Gitea server (SQLite, no SSH, no mail) on a loopback
// port, with an admin user: the forge of the forge tests (commit statuses,
// pull requests, webhooks), run as an operator would.
type Gitea struct {
	URL      string // "http://127.0.0.1:PORT"
	User     string // the admin user
	Password string
	// Token is the admin's token with every scope.
	Token string
}

// StartGitea starts Gitea for the test, its log in the test log, and
// stops it when the test ends. The binary is built by scripts/test from the
// module proxy (internal/testenv/giteabin/build.sh: the version is pinned
// in its go.mod), in the background on a cold machine: StartGitea waits
// for it (WaitBuilt), so the test's name must say "gitea". Its templates
// and locales are read from the source it was built from (BIN-src).
func StartGitea(t testing.TB) *Gitea {
	t.Helper()
	bin := WaitBuilt(t, "gitea")
	src := bin + "-src"
	if _, err := os.Stat(filepath.Join(src, "templates")); err != nil {
		unavailable(t, "gitea", fmt.Errorf("its source is missing (internal/testenv/giteabin/build.sh): %w", err))
	}
	dir := t.TempDir()
	port := FreePort(t)
	g := &Gitea{URL: fmt.Sprintf("http://127.0.0.1:%d", port), User: "berth", Password: "pw-" + randomID()}
	ini := filepath.Join(dir, "app.ini")
	if err := os.WriteFile(ini, []byte(giteaINI(dir, src, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A clean environment: Gitea runs `git config --global` in its HOME,
	// which must not follow the tests' GIT_CONFIG_GLOBAL (NoGitConfig).
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GITEA_WORK_DIR=" + dir, "GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT=true"}
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--config", ini}, args...)...)
		cmd.Env, cmd.Dir = env, dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("gitea %s: %w: %s", args[0], err, bytes.TrimSpace(out))
		}
		return strings.TrimSpace(string(out)), nil
	}
	// The database and the admin before the server starts: no race with it.
	if _, err := cli("migrate"); err != nil {
		unavailable(t, "gitea", err)
	}
	if _, err := cli("admin", "user", "create", "--admin", "--username", g.User, "--password", g.Password,
		"--email", "berth@example.org", "--must-change-password=false"); err != nil {
		unavailable(t, "gitea", err)
	}
	cmd := exec.Command(bin, "web", "--config", ini)
	cmd.Env, cmd.Dir = env, dir
	p, err := startProcess(t, "gitea", cmd)
	if err != nil {
		unavailable(t, "gitea", err)
	}
	t.Cleanup(p.stop)
	// 200 only: while it starts, Gitea answers every path 404 before its
	// routes are in place, and a token asked for then is refused.
	if err := p.waitHTTPStatus(g.URL+"/api/v1/version", 2*time.Minute, func(code int) bool { return code == http.StatusOK }); err != nil {
		unavailable(t, "gitea", err)
	}
	g.Token = g.NewToken(t, "all", "all")
	return g
}

func giteaINI(dir, src string, port int) string {
	runUser := "root"
	if u, err := user.Current(); err == nil {
		runUser = u.Username
	}
	return fmt.Sprintf(`APP_NAME = berth test
RUN_MODE = prod
RUN_USER = %[4]s
WORK_PATH = %[1]s
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[3]d
ROOT_URL = http://127.0.0.1:%[3]d/
DISABLE_SSH = true
OFFLINE_MODE = true
LFS_START_SERVER = false
STATIC_ROOT_PATH = %[2]s
APP_DATA_PATH = %[1]s/data

[database]
DB_TYPE = sqlite3
PATH = %[1]s/gitea.db

[repository]
ROOT = %[1]s/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true
ALLOWED_HOST_LIST = loopback

[service]
DISABLE_REGISTRATION = true

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[mailer]
ENABLED = false

[actions]
ENABLED = false

[cron]
ENABLED = false

[webhook]
DELIVER_TIMEOUT = 5

[log]
MODE = console
LEVEL = warn
ROOT_PATH = %[1]s/log
`, dir, src, port, runUser)
}

// NewToken makes a token of the admin with the given scopes
// ("write:repository", "write:issue", or "all").
func (g *Gitea) NewToken(t testing.TB, name string, scopes ...string) string {
	t.Helper()
	var out struct {
		SHA1 string `json:"sha1"`
	}
	in := map[string]any{"name": name + "-" + randomID(), "scopes": scopes}
	if code := g.call(t, http.MethodPost, "/users/"+g.User+"/tokens", "", in, &out); code != http.StatusCreated || out.SHA1 == "" {
		t.Fatalf("testenv: gitea token: status %d", code)
	}
	return out.SHA1
}

// API calls Gitea's API (below /api/v1) as the admin, and decodes the
// answer into out when it is not nil. It returns the status code.
func (g *Gitea) API(t testing.TB, method, path string, in, out any) int {
	t.Helper()
	return g.call(t, method, path, g.Token, in, out)
}

func (g *Gitea) call(t testing.TB, method, path, token string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.URL+"/api/v1"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "token "+token)
	} else {
		req.SetBasicAuth(g.User, g.Password)
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("testenv: gitea %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("testenv: gitea %s %s: %v: %s", method, path, err, b)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("testenv: gitea %s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode
}

// GiteaRepo is a repository of the admin on a Gitea.
type GiteaRepo struct {
	g    *Gitea
	Name string // "berth/NAME"
}

// CreateRepo creates a public repository with an initial commit on main.
func (g *Gitea) CreateRepo(t testing.TB, name string) *GiteaRepo {
	t.Helper()
	in := map[string]any{"name": name, "auto_init": true, "default_branch": "main", "readme": "Default"}
	if code := g.API(t, http.MethodPost, "/user/repos", in, nil); code != http.StatusCreated {
		t.Fatalf("testenv: gitea create repo %s: status %d", name, code)
	}
	return &GiteaRepo{g: g, Name: g.User + "/" + name}
}

// CloneURL is the repository's anonymous HTTP clone URL.
func (r *GiteaRepo) CloneURL() string { return r.g.URL + "/" + r.Name + ".git" }

// CommitFiles writes files (whole content; "" deletes one) in one commit
// on branch through the files API and returns the commit id.
func (r *GiteaRepo) CommitFiles(t testing.TB, branch, msg string, files map[string]string) string {
	t.Helper()
	var ops []map[string]string
	for p, c := range files {
		op := map[string]string{"operation": "upload", "path": p, "content": base64.StdEncoding.EncodeToString([]byte(c))}
		if c == "" {
			var cur struct {
				SHA string `json:"sha"`
			}
			r.g.API(t, http.MethodGet, "/repos/"+r.Name+"/contents/"+p+"?ref="+branch, nil, &cur)
			op = map[string]string{"operation": "delete", "path": p, "sha": cur.SHA}
		}
		ops = append(ops, op)
	}
	var out struct {
		Commit struct {
			SHA string `json:"sha"`
		} `json:"commit"`
	}
	in := map[string]any{"branch": branch, "message": msg, "files": ops}
	if code := r.g.API(t, http.MethodPost, "/repos/"+r.Name+"/contents", in, &out); code != http.StatusCreated || out.Commit.SHA == "" {
		t.Fatalf("testenv: gitea commit to %s: status %d", r.Name, code)
	}
	return out.Commit.SHA
}

// NewUser creates a user (a bot, another person) and returns a token of
// theirs with scopes.
func (g *Gitea) NewUser(t testing.TB, name string, scopes ...string) string {
	t.Helper()
	pw := "pw-" + randomID()
	in := map[string]any{"username": name, "email": name + "@example.org", "password": pw, "must_change_password": false}
	if code := g.API(t, http.MethodPost, "/admin/users", in, nil); code != http.StatusCreated {
		t.Fatalf("testenv: gitea user %s: status %d", name, code)
	}
	b, _ := json.Marshal(map[string]any{"name": "t-" + randomID(), "scopes": scopes})
	req, err := http.NewRequest(http.MethodPost, g.URL+"/api/v1/users/"+name+"/tokens", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(name, pw)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatalf("testenv: gitea token of %s: %v", name, err)
	}
	defer resp.Body.Close()
	var out struct {
		SHA1 string `json:"sha1"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.SHA1 == "" {
		t.Fatalf("testenv: gitea token of %s: status %d %v", name, resp.StatusCode, err)
	}
	return out.SHA1
}

// GiteaStatus is a commit status as Gitea lists it.
type GiteaStatus struct {
	Status      string `json:"status"`
	Context     string `json:"context"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
}

// Statuses lists the statuses of sha, newest first (at most 50). By
// index: Gitea's default order is by creation second, which leaves two
// statuses posted in the same second in either order.
func (r *GiteaRepo) Statuses(t testing.TB, sha string) []GiteaStatus {
	t.Helper()
	var ss []GiteaStatus
	r.g.API(t, http.MethodGet, "/repos/"+r.Name+"/commits/"+sha+"/statuses?sort=leastindex&limit=50", nil, &ss)
	return ss
}
