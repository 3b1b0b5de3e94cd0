package gitsource

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/filemode"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

type entry = testenv.TreeEntry

func TestCheckout_RefusesUnsafeTreesBeforeWritingAnything(t *testing.T) {
	outside := t.TempDir() // a host directory a hostile tree aims at
	compose := entry{Name: "compose.yaml", Content: "services: {}\n"}
	tests := []struct {
		name    string
		entries []entry
		want    string
	}{
		{
			name: "a tree beneath a symlink of the same name",
			entries: []entry{
				{Name: "a", Mode: filemode.Symlink, Content: outside},
				{Name: "a", Tree: []entry{{Name: "evil", Content: "pwned\n"}}},
			},
			want: `entry "a" appears twice in "/"`,
		},
		{
			name: "a blob whose name holds a slash, beneath a symlink",
			entries: []entry{
				{Name: "a", Mode: filemode.Symlink, Content: outside},
				{Name: "a/evil", Content: "pwned\n"},
			},
			want: `entry "a/evil" in "/": holds a '/'`,
		},
		{name: "dot dot", entries: []entry{compose, {Name: "..", Tree: []entry{{Name: "evil", Content: "x"}}}}, want: `entry ".." in "/": names the directory itself or its parent`},
		{name: "dot", entries: []entry{{Name: ".", Tree: []entry{compose}}}, want: `entry "." in "/": names the directory itself or its parent`},
		{name: ".git in any case", entries: []entry{{Name: "envs", Tree: []entry{{Name: ".GiT", Tree: []entry{{Name: "config", Content: "x"}}}}}}, want: `entry ".GiT" in "/envs": a .git entry would be taken for a repository`},
		{name: "duplicate files", entries: []entry{{Name: "f", Content: "1"}, {Name: "f", Content: "2"}}, want: `entry "f" appears twice in "/"`},
	}
	g := testenv.StartGitServer(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := g.NewRepo(t, strings.NewReplacer(" ", "-", ".", "d").Replace(tc.name))
			good := repo.CommitFiles(t, "good", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
			dir := t.TempDir()
			s := newSource(t, Config{URL: repo.HTTPURL(), Dir: dir})
			if _, err := s.Fetch(t.Context(), good, ""); err != nil {
				t.Fatal(err)
			}
			bad := repo.CommitTree(t, "hostile", tc.entries)
			_, err := s.Fetch(t.Context(), bad, good)
			if err == nil {
				t.Fatal("hostile tree checked out")
			}
			if !errors.Is(err, ErrUnsafeTree) || !failure.IsVerdict(err) {
				t.Errorf("error %v is not an unsafe-tree verdict", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(outside); len(ents) > 0 {
				t.Errorf("written outside the checkout: %v", ents)
			}
			if _, err := os.Lstat(filepath.Join(dir, "checkouts", bad)); err == nil {
				t.Error("a working copy of the refused commit exists")
			}
			if _, err := os.Lstat(filepath.Join(dir, "checkouts", ".tmp-"+bad)); err == nil {
				t.Error("a partial working copy of the refused commit exists")
			}
		})
	}
}

func TestCheckout_SymlinksAreWrittenAsLinksNeverFollowed(t *testing.T) {
	outside := t.TempDir()
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "links")
	c := repo.CommitTree(t, "links", []entry{
		{Name: "envs", Tree: []entry{{Name: "prod", Tree: []entry{{Name: "compose.yaml", Content: "services: {}\n"}}}}},
		{Name: "host", Mode: filemode.Symlink, Content: outside},
		{Name: "up", Mode: filemode.Symlink, Content: "../../.."},
	})
	s := newSource(t, Config{URL: repo.HTTPURL()})
	rev, err := s.Fetch(t.Context(), c, "")
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(rev.Dir, "host")); err != nil || target != outside {
		t.Fatalf("host link: %q, %v", target, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("written outside the checkout: %v", ents)
	}
}

func TestCheckout_ChangedWorkingCopyIsWrittenAgainBeforeReuse(t *testing.T) {
	outside := t.TempDir()
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "reuse")
	c := repo.CommitFiles(t, "c", map[string]string{"envs/prod/compose.yaml": "services: {}\n", "envs/prod/conf/app.ini": "a=1\n", "bin/run": "#!/bin/sh\n"})
	s := newSource(t, Config{URL: repo.HTTPURL()})
	rev, err := s.Fetch(t.Context(), c, "")
	if err != nil {
		t.Fatal(err)
	}
	edits := []struct {
		name string
		edit func(dir string) error
	}{
		{"content", func(d string) error {
			return os.WriteFile(filepath.Join(d, "envs/prod/conf/app.ini"), []byte("a=2\n"), 0o644)
		}},
		{"directory swapped for a symlink", func(d string) error {
			if err := os.RemoveAll(filepath.Join(d, "envs/prod/conf")); err != nil {
				return err
			}
			return os.Symlink(outside, filepath.Join(d, "envs/prod/conf"))
		}},
		{"file added", func(d string) error {
			return os.WriteFile(filepath.Join(d, "envs/prod/extra.yaml"), []byte("x"), 0o644)
		}},
		{"mode", func(d string) error { return os.Chmod(filepath.Join(d, "envs/prod/compose.yaml"), 0o755) }},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			if err := e.edit(rev.Dir); err != nil {
				t.Fatal(err)
			}
			again, err := s.Fetch(t.Context(), c, "")
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(again.Dir, "envs/prod/conf/app.ini")); err != nil || string(b) != "a=1\n" {
				t.Fatalf("working copy not restored: %q, %v", b, err)
			}
			if fi, err := os.Lstat(filepath.Join(again.Dir, "envs/prod/conf")); err != nil || !fi.IsDir() {
				t.Fatalf("conf is not a directory again: %v", err)
			}
			if _, err := os.Stat(filepath.Join(again.Dir, "envs/prod/extra.yaml")); err == nil {
				t.Fatal("added file survived")
			}
			if ents, _ := os.ReadDir(outside); len(ents) > 0 {
				t.Errorf("written outside the checkout: %v", ents)
			}
		})
	}
}

// Git's own tools refuse to pack an empty name, and a NUL ends a name in
// the tree format, so these cannot be pushed; the rule stands anyway.
func TestCheckout_BadNames(t *testing.T) {
	for name, want := range map[string]string{
		"": "empty name", ".": "names the directory itself or its parent", "..": "names the directory itself or its parent",
		".git": "a .git entry would be taken for a repository", ".GIT.": "a .git entry would be taken for a repository",
		"a/b": "holds a '/'", "a\x00b": "holds a NUL byte", "git": "", ".gitignore": "", "...": "",
	} {
		if got := badName(name); got != want {
			t.Errorf("badName(%q) = %q, want %q", name, got, want)
		}
	}
}
