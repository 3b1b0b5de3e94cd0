package gitsource

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"berth.dev/berth/internal/testenv"
)

func TestExport_WritesARevisionsTreeAndReadsTheRepositoryOnly(t *testing.T) {
	t.Setenv("GIT_CONFIG_GLOBAL", testenv.NoGitConfig)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=a", "-c", "user.email=a@example.org"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("one"), 0o644)
	git("add", "-A")
	git("commit", "-qm", "first\n\nbody")
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("two"), 0o644)
	git("commit", "-qam", "second")

	dst := filepath.Join(t.TempDir(), "tree")
	rev, err := Export(dir, "HEAD~1", dst)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(b) != "one" || rev.Subject != "first" || len(rev.Commit) != 40 {
		t.Errorf("exported %q, revision %+v", b, rev)
	}
	if _, err := os.Stat(filepath.Join(dst, ".git")); err == nil {
		t.Error("the export holds no .git")
	}
	for _, bad := range []string{"--output=/tmp/x", "no-such-branch"} {
		if _, err := Export(dir, bad, filepath.Join(t.TempDir(), "x")); err == nil {
			t.Errorf("%q must be refused", bad)
		}
	}
}
