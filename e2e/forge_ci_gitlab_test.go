package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v4"

	"berth.dev/berth/internal/testenv"
)

// TestE2E_GitLabCIScriptPostsOneNote runs the GitLab CI job of
// docs/forge.md, its script lines as written there (one bash -e shell, as
// a runner does, with the package install and the download left out),
// against a fake of GitLab's notes API that answers as GitLab's API docs
// record (the forge contract tests' source): the plan is posted as one
// note of the token's user and updated on the next push, a person's note
// that starts with the marker is left alone, and the plan's exit code is
// the job's. GitLab has no local server, so this is a contract test of the
// script; the Gitea/Forgejo step runs against a real Gitea
// (TestE2E_GiteaCIStepPostsOneComment).
func TestE2E_GitLabCIScriptPostsOneNote(t *testing.T) {
	testenv.Parallel(t)
	bin := testenv.BerthBinary(t)
	script := docGitLabScript(t)
	api := newFakeGitLabNotes(t, 42, 7)
	api.add(3, "<!-- berth-plan -->\nnot berth's: leave this alone") // a person wrote the marker first

	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "berth")); err != nil {
		t.Fatal(err)
	}
	origin := filepath.Join(t.TempDir(), "config.git")
	work := filepath.Join(t.TempDir(), "checkout")
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = dir, testenv.GitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	const web = "services:\n  web:\n    image: registry.example.org/shop@sha256:%s\n    x-berth: {role: worker}\n"
	commit := func(msg, compose string) {
		t.Helper()
		os.MkdirAll(filepath.Join(work, "envs/prod"), 0o755)
		os.WriteFile(filepath.Join(work, "envs/prod/compose.yaml"), []byte(compose), 0o644)
		git(work, "add", "-A")
		git(work, "commit", "-qm", msg)
	}
	git("", "init", "-q", "--bare", "-b", "main", origin)
	git("", "clone", "-q", origin, work)
	git(work, "checkout", "-q", "-b", "main")
	commit("shop 1.0", fmt.Sprintf(web, strings.Repeat("a", 64)))
	git(work, "push", "-q", "origin", "main")
	git(work, "checkout", "-q", "-b", "feature")
	commit("shop 1.1", fmt.Sprintf(web, strings.Repeat("b", 64)))

	job := func() bool {
		t.Helper()
		cmd := exec.Command("bash", "-e", "-c", script)
		cmd.Dir = work
		cmd.Env = append(testenv.GitEnv(), "PATH="+binDir+":"+os.Getenv("PATH"),
			"CI_API_V4_URL="+api.URL, "CI_PROJECT_ID=42", "CI_MERGE_REQUEST_IID=5",
			"CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main", "BERTH_PLAN_TOKEN="+api.token)
		out, err := cmd.CombinedOutput()
		t.Logf("job: %v\n%s", err, out)
		return err == nil
	}
	if !job() {
		t.Fatal("the job failed on a valid change")
	}
	mine, theirs := api.notes()
	if len(mine) != 1 || !strings.HasPrefix(mine[0], "<!-- berth-plan -->") || !strings.Contains(mine[0], "**replace** `web`") {
		t.Fatalf("the token user's notes: %q", mine)
	}
	if len(theirs) != 1 || !strings.Contains(theirs[0], "not berth's") {
		t.Errorf("the person's note: %q", theirs)
	}
	commit("shop 1.2", "services: [not, a, map]\n")
	if job() {
		t.Error("the job passed on an env that fails validation")
	}
	mine, theirs = api.notes()
	if len(mine) != 1 || !strings.Contains(mine[0], "**Refused**") {
		t.Errorf("after the second push, the token user's notes: %q", mine)
	}
	if len(theirs) != 1 {
		t.Errorf("after the second push, the person's notes: %q", theirs)
	}
}

// docGitLabScript is the script of the GitLab CI job in docs/forge.md,
// one line per item, without the package install and the download.
func docGitLabScript(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../docs/forge.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "**GitLab CI**")
	if !ok {
		t.Fatal("docs/forge.md has no GitLab CI job")
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	var jobs map[string]struct {
		Script []string `yaml:"script"`
	}
	if err := yaml.Unmarshal([]byte(block), &jobs); err != nil {
		t.Fatalf("the GitLab CI job in docs/forge.md: %v", err)
	}
	var lines []string
	for _, j := range jobs {
		for _, l := range j.Script {
			if strings.HasPrefix(l, "apt-get ") || strings.Contains(l, "/usr/local/bin/berth") {
				continue
			}
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatal("the GitLab CI job in docs/forge.md has no script")
	}
	return strings.Join(lines, "\n")
}

// fakeGitLabNotes answers GitLab's /user and merge request notes
// endpoints (docs.gitlab.com/api/users, /api/notes): PRIVATE-TOKEN auth,
// notes newest first, POST to add, PUT …/notes/:id to edit.
type fakeGitLabNotes struct {
	*httptest.Server
	token   string
	me      int
	mu      sync.Mutex
	authors []int
	bodies  []string
}

func newFakeGitLabNotes(t *testing.T, project, me int) *fakeGitLabNotes {
	f := &fakeGitLabNotes{token: "glpat-test", me: me}
	notes := fmt.Sprintf("/projects/%d/merge_requests/5/notes", project)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /user", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"id": f.me, "username": "planbot"})
	})
	mux.HandleFunc("GET "+notes, func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []map[string]any
		for i := len(f.bodies) - 1; i >= 0; i-- {
			out = append(out, map[string]any{"id": i + 1, "body": f.bodies[i], "author": map[string]any{"id": f.authors[i]}})
		}
		json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST "+notes, func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Body string }
		if json.NewDecoder(r.Body).Decode(&in) != nil || in.Body == "" {
			http.Error(w, `{"message":"400 (Bad request) \"body\" not given"}`, http.StatusBadRequest)
			return
		}
		id := f.add(f.me, in.Body)
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"id": id, "body": in.Body})
	})
	mux.HandleFunc("PUT "+notes+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Body string }
		id, _ := strconv.Atoi(r.PathValue("id"))
		f.mu.Lock()
		defer f.mu.Unlock()
		if json.NewDecoder(r.Body).Decode(&in) != nil || id < 1 || id > len(f.bodies) || f.authors[id-1] != f.me {
			http.Error(w, `{"message":"403 Forbidden"}`, http.StatusForbidden)
			return
		}
		f.bodies[id-1] = in.Body
		json.NewEncoder(w).Encode(map[string]any{"id": id, "body": in.Body})
	})
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PRIVATE-TOKEN") != f.token {
			http.Error(w, `{"message":"401 Unauthorized"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitLabNotes) add(author int, body string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authors, f.bodies = append(f.authors, author), append(f.bodies, body)
	return len(f.bodies)
}

// notes are the bodies of the token user's notes and of others', oldest
// first.
func (f *fakeGitLabNotes) notes() (mine, theirs []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, b := range f.bodies {
		if f.authors[i] == f.me {
			mine = append(mine, b)
		} else {
			theirs = append(theirs, b)
		}
	}
	return mine, theirs
}
