package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// LocalRepo is a Git work tree in a temp dir, committed to with the git
// CLI as a developer's checkout is: for code that reads revisions of a
// checkout (berth plan --repo, gitsource.Export). No server, no push.
type LocalRepo struct{ Dir string }

// NewLocalRepo makes an empty repository on branch main.
func NewLocalRepo(t testing.TB) *LocalRepo {
	t.Helper()
	r := &LocalRepo{Dir: t.TempDir()}
	runGit(t, r.Dir, "init", "-q", "-b", "main")
	return r
}

// Git runs git in the work tree and returns its trimmed output.
func (r *LocalRepo) Git(t testing.TB, args ...string) string {
	t.Helper()
	return strings.TrimSpace(runGit(t, r.Dir, append([]string{"-c", "user.name=dev", "-c", "user.email=dev@example.org", "-c", "commit.gpgsign=false"}, args...)...))
}

// Commit writes files (path → content; "" deletes the path), commits
// everything with msg and returns the commit id.
func (r *LocalRepo) Commit(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(r.Dir, filepath.FromSlash(p))
		if content == "" {
			os.RemoveAll(full)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.Git(t, "add", "-A")
	r.Git(t, "commit", "-q", "--allow-empty", "-m", msg)
	return r.Git(t, "rev-parse", "HEAD")
}
