package gitsource

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"berth.dev/berth/internal/testenv"
)

// deployLoop does what the agent does for each new head: list, fetch with
// the history check against the live commit, then prune keeping the new
// live one and the previous (keep_revisions: 2).
type deployLoop struct {
	t          *testing.T
	s          *Source
	repo       *testenv.GitRepo
	live, prev string
	n          int
}

func (d *deployLoop) deploy() {
	d.t.Helper()
	d.n++
	d.repo.CommitFiles(d.t, fmt.Sprintf("change %d", d.n), map[string]string{
		"envs/prod/compose.yaml":                      fmt.Sprintf("services: {} # %d\n", d.n),
		fmt.Sprintf("envs/prod/f%d.txt", d.n%5):       fmt.Sprintf("%d\n", d.n),
		"shared/unchanged.txt":                        "same in every revision\n",
		fmt.Sprintf("envs/prod/dir%d/x.txt", d.n%3):   fmt.Sprintf("x%d\n", d.n),
		fmt.Sprintf("envs/prod/dir%d/y.txt", d.n%3+1): "y\n",
	})
	head, err := d.s.Head(d.t.Context())
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.s.Fetch(d.t.Context(), head, d.live); err != nil {
		d.t.Fatalf("fetch %d: %v", d.n, err)
	}
	d.prev, d.live = d.live, head
	keep := []string{d.live}
	if d.prev != "" {
		keep = append(keep, d.prev)
	}
	if err := d.s.Prune(keep...); err != nil {
		d.t.Fatalf("prune %d: %v", d.n, err)
	}
}

func storeStats(t *testing.T, s *Source) StoreStats {
	t.Helper()
	st, err := s.StoreStats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// gitCLI runs git on the store: fsck is the real Git's verdict on it.
func gitCLI(t *testing.T, s *Source, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"--git-dir", filepath.Join(s.cfg.Dir, "store.git")}, args...)...)
	cmd.Env = testenv.GitEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func hasCommit(s *Source, c string) bool {
	_, err := s.store.CommitObject(plumbing.NewHash(c))
	return err == nil
}

func withRecent(t *testing.T, n int) {
	old := RecentRevisions
	RecentRevisions = n
	t.Cleanup(func() { RecentRevisions = old })
}

func TestStore_StaysBoundedAndKeepsWhatTheAgentKeeps(t *testing.T) {
	withRecent(t, 3)
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
	d := &deployLoop{t: t, s: newSource(t, Config{URL: repo.HTTPURL(), MaxPacks: 4, HistoryDepth: 4}), repo: repo}
	var commits []string
	maxPacks := 0
	for range 30 {
		d.deploy()
		commits = append(commits, d.live)
		maxPacks = max(maxPacks, storeStats(t, d.s).Packs)
	}
	if maxPacks > 4 {
		t.Errorf("the store reached %d packs, threshold 4", maxPacks)
	}
	// Kept: live, previous, the last 3 handed out and 4 generations from
	// the head, plus what was fetched since the last compaction (at most 4
	// fetches); older ones are gone, and fetches did not bring them back.
	for i, c := range commits {
		if i >= len(commits)-4 && !hasCommit(d.s, c) {
			t.Errorf("commit %d (%.12s) of the last 4 is not in the store", i+1, c)
		}
		if i < len(commits)-8 && hasCommit(d.s, c) {
			t.Errorf("old commit %d (%.12s) is still in the store", i+1, c)
		}
	}
	gitCLI(t, d.s, "fsck", "--no-progress", "--strict")

	// A kept older revision is served from the store, with no request.
	g.ResetTraffic()
	if _, err := d.s.Fetch(t.Context(), d.prev, ""); err != nil {
		t.Fatalf("fetch of the kept previous revision: %v", err)
	}
	if reqs, _ := g.Traffic(); reqs != 0 {
		t.Errorf("fetch of a kept revision made %d requests", reqs)
	}

	// A working copy changed by hand after a compaction is written again
	// from the new store (the remembered tree read the old one).
	if err := d.s.Compact(); err != nil {
		t.Fatal(err)
	}
	rev, err := d.s.Fetch(t.Context(), d.live, "")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(rev.Dir, "envs/prod/compose.yaml"))
	os.Chmod(filepath.Join(rev.Dir, "envs/prod"), 0o755)
	os.WriteFile(filepath.Join(rev.Dir, "envs/prod/compose.yaml"), []byte("changed by hand\n"), 0o644)
	if rev, err = d.s.Fetch(t.Context(), d.live, ""); err != nil {
		t.Fatalf("working copy after a compaction: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(rev.Dir, "envs/prod/compose.yaml")); string(got) != string(want) {
		t.Fatalf("working copy not restored: %q, want %q", got, want)
	}

	// The history check still works across a compacted store: several
	// commits at once, then a force push is still refused.
	for i := range 3 {
		repo.CommitFiles(t, fmt.Sprintf("burst %d", i), map[string]string{"envs/prod/burst.txt": fmt.Sprint(i)})
	}
	if err := d.s.Compact(); err != nil {
		t.Fatal(err)
	}
	head, _ := d.s.Head(t.Context())
	if _, err := d.s.Fetch(t.Context(), head, d.live); err != nil {
		t.Fatalf("fetch of three new commits after a compaction: %v", err)
	}
	repo.Git(t, "commit", "-q", "--amend", "-m", "rewritten")
	repo.Git(t, "push", "-q", "-f", "origin", "HEAD:refs/heads/main")
	rewritten, _ := d.s.Head(t.Context())
	if _, err := d.s.Fetch(t.Context(), rewritten, head); !errors.Is(err, ErrRewrite) {
		t.Fatalf("force push after compaction: %v, want ErrRewrite", err)
	}
	gitCLI(t, d.s, "fsck", "--no-progress", "--strict")
}

func TestStore_RetainedListSurvivesARestart(t *testing.T) {
	withRecent(t, 2)
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	repo.CommitFiles(t, "first", map[string]string{"a": "1"})
	dir := t.TempDir()
	cfg := Config{URL: repo.HTTPURL(), Dir: dir, MaxPacks: 100, HistoryDepth: 2}
	d := &deployLoop{t: t, s: newSource(t, cfg), repo: repo}
	var commits []string
	for range 6 {
		d.deploy()
		commits = append(commits, d.live)
	}
	// A restarted agent whose live revision is old (a rollback hold):
	// Prune names it, and compaction keeps it although it is neither
	// recent nor near the head; a commit nothing names goes.
	if err := newSource(t, cfg).Prune(commits[0], d.live); err != nil {
		t.Fatal(err)
	}
	s := newSource(t, cfg)
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	if !hasCommit(s, commits[0]) || !hasCommit(s, d.live) {
		t.Fatal("kept commits lost across restarts")
	}
	if hasCommit(s, commits[2]) {
		t.Fatalf("commit %.12s, neither kept nor recent nor near the head, is still stored", commits[2])
	}
	gitCLI(t, s, "fsck", "--no-progress", "--strict")
}

// The child side of TestStore_KilledAtEveryStep: compact, and die by
// SIGKILL at the named step.
func TestStoreCrashChild(t *testing.T) {
	step := os.Getenv("GITSOURCE_KILL_AT")
	if step == "" {
		return // only as TestStore_KilledAtEveryStep's child process
	}
	storeHook = func(s string) {
		if s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	s, err := New(Config{URL: os.Getenv("GITSOURCE_URL"), Dir: os.Getenv("GITSOURCE_DIR")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("step %s never reached", step)
}

func TestStore_KilledAtEveryStep(t *testing.T) {
	withRecent(t, 2)
	g := testenv.StartGitServer(t)
	repo := g.NewRepo(t, "config")
	repo.CommitFiles(t, "first", map[string]string{"envs/prod/compose.yaml": "services: {}\n"})
	steps := []string{"walked", "pack-partial", "pack-written", "pack-synced", "shallow-written", "old-pack-removed", "old-packs-removed"}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			d := &deployLoop{t: t, s: newSource(t, Config{URL: repo.HTTPURL(), Dir: dir, MaxPacks: 1000}), repo: repo}
			for range 6 {
				d.deploy()
			}
			before := storeStats(t, d.s)
			cmd := exec.Command(os.Args[0], "-test.run=^TestStoreCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "GITSOURCE_KILL_AT="+step, "GITSOURCE_URL="+repo.HTTPURL(), "GITSOURCE_DIR="+dir)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child not killed at %s: %v\n%s", step, err, out)
			}

			// The store opens, holds what the agent keeps, and Git finds it
			// sound; the next poll and the next compaction work.
			s := newSource(t, Config{URL: repo.HTTPURL(), Dir: dir, MaxPacks: 4})
			if _, err := os.Stat(filepath.Join(dir, "store.git", "objects", "pack")); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "store.git", "objects", "pack")); len(entries) > 0 {
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), "tmp_") {
						t.Errorf("leftover %s", e.Name())
					}
				}
			}
			for _, c := range []string{d.live, d.prev} {
				if !hasCommit(s, c) {
					t.Fatalf("kept commit %.12s lost (packs before: %d)", c, before.Packs)
				}
				if _, err := s.Fetch(t.Context(), c, ""); err != nil {
					t.Fatalf("working copy of %.12s: %v", c, err)
				}
			}
			gitCLI(t, s, "fsck", "--no-progress")
			d.s = s
			for range 5 {
				d.deploy()
			}
			if st := storeStats(t, s); st.Packs > 4 {
				t.Errorf("after the crash, compaction no longer runs: %d packs", st.Packs)
			}
			gitCLI(t, s, "fsck", "--no-progress", "--strict")
		})
	}
}

func TestStore_OpenCleansLeftovers(t *testing.T) {
	dir := t.TempDir()
	s := newSource(t, Config{URL: "https://example.invalid/r.git", Dir: dir})
	pack := filepath.Join(dir, "store.git", "objects", "pack")
	os.MkdirAll(pack, 0o755)
	for _, f := range []string{"tmp_pack_123", "pack-aaaa.idx"} {
		os.WriteFile(filepath.Join(pack, f), []byte("x"), 0o644)
	}
	_ = s
	newSource(t, Config{URL: "https://example.invalid/r.git", Dir: dir})
	if entries, _ := os.ReadDir(pack); len(entries) != 0 {
		t.Fatalf("leftovers kept: %v", entries)
	}
}
