package gitsource

import (
	"os"
	"path/filepath"
	"testing"

	"berth.dev/berth/internal/testenv"
)

func TestExport_WritesARevisionsTreeAndReadsTheRepositoryOnly(t *testing.T) {
	repo := testenv.NewLocalRepo(t)
	dir := repo.Dir
	repo.Commit(t, "first\n\nbody", map[string]string{"a.txt": "one"})
	repo.Commit(t, "second", map[string]string{"a.txt": "two"})

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
