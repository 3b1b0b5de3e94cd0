package gitsource

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5"

	"berth.dev/berth/internal/testenv"
)

// pushChange commits a change to one of the generated repository's files,
// as a merged PR would.
func pushChange(b *testing.B, repo *testenv.GitRepo, n int) {
	b.Helper()
	dir := b.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = testenv.GitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("clone", "-q", "--depth", "1", repo.FileURL(), ".")
	f := fmt.Sprintf("envs/prod/conf/file-%04d.yaml", n%benchFiles)
	if err := os.WriteFile(filepath.Join(dir, f), fmt.Appendf(nil, "# file\nkey: store-bench-%d\n", n), 0o644); err != nil {
		b.Fatal(err)
	}
	git("commit", "-q", "-am", fmt.Sprintf("store bench %d", n))
	git("push", "-q", "origin", "HEAD:refs/heads/main")
}

// BenchmarkStoreMaintenance compares ways to bound the object store on the
// 10,000-commit, 2,000-file repository after a first fetch and 20 deploys
// of one-file changes (21 packs): berth's in-place compaction to the
// retained revisions, go-git's Repository.RepackObjects on the same store,
// and a fresh shallow fetch of the head into a new store (what a swap to a
// rebuilt store would cost, before the swap itself).
//
//	go test -run '^$' -bench StoreMaintenance -benchtime 5x ./gitsource
func BenchmarkStoreMaintenance(b *testing.B) {
	g, repo := benchRepo(b)
	defer func(v int64) { compactMinBytes = v }(compactMinBytes)
	compactMinBytes = 1 << 40 // 21 packs, as the pack count alone would let pile up
	base := b.TempDir()
	s, err := New(Config{URL: repo.HTTPURL(), Dir: base, MaxPacks: 1000}, nil)
	if err != nil {
		b.Fatal(err)
	}
	deployed, _ := s.Head(b.Context())
	if _, err := s.Fetch(b.Context(), deployed, ""); err != nil {
		b.Fatal(err)
	}
	prev := ""
	for i := range 20 {
		pushChange(b, repo, i)
		head, _ := s.Head(b.Context())
		if _, err := s.Fetch(b.Context(), head, deployed); err != nil {
			b.Fatal(err)
		}
		prev, deployed = deployed, head
		if err := s.Prune(deployed, prev); err != nil {
			b.Fatal(err)
		}
	}
	before, _ := s.StoreStats()
	// copyStore gives each iteration the same 21-pack store.
	copyStore := func(b *testing.B) string {
		b.Helper()
		dir := filepath.Join(b.TempDir(), "src")
		if out, err := exec.Command("cp", "-a", base, dir).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v\n%s", err, out)
		}
		return dir
	}

	b.Run("berth-compact", func(b *testing.B) {
		var after StoreStats
		for b.Loop() {
			b.StopTimer()
			c, err := New(Config{URL: repo.HTTPURL(), Dir: copyStore(b)}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := c.Compact(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			after, _ = c.StoreStats()
			if !hasCommit(c, deployed) || !hasCommit(c, prev) {
				b.Fatal("compaction lost a kept commit")
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(before.Packs), "packs-before")
		b.ReportMetric(float64(before.Bytes), "bytes-before")
		b.ReportMetric(float64(after.Packs), "packs-after")
		b.ReportMetric(float64(after.Bytes), "bytes-after")
	})
	b.Run("go-git-RepackObjects", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir := copyStore(b)
			r, err := git.PlainOpen(filepath.Join(dir, "store.git"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := r.RepackObjects(&git.RepackConfig{}); err != nil {
				// v5.19's object walker follows parents past the shallow
				// boundary: it cannot repack a shallow store at all
				// ("getting object …: object not found").
				b.Logf("RepackObjects on the shallow store: %v", err)
				b.SkipNow()
			}
			b.StopTimer()
			st, _ := packStats(filepath.Join(dir, "store.git", "objects", "pack"))
			b.ReportMetric(float64(st.Bytes), "bytes-after")
			b.StartTimer()
		}
	})
	b.Run("go-git-RepackObjects-full-clone", func(b *testing.B) {
		// What RepackObjects costs where it works: a full (not shallow)
		// bare clone, all 10,000 commits kept.
		full := filepath.Join(b.TempDir(), "full.git")
		cmd := exec.Command("git", "clone", "-q", "--bare", repo.FileURL(), full)
		cmd.Env = testenv.GitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git clone: %v\n%s", err, out)
		}
		var bytes int64
		for b.Loop() {
			r, err := git.PlainOpen(full)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.RepackObjects(&git.RepackConfig{}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			st, _ := packStats(filepath.Join(full, "objects", "pack"))
			bytes = st.Bytes
			b.StartTimer()
		}
		b.ReportMetric(float64(bytes), "bytes-after")
	})
	b.Run("fresh-shallow-fetch", func(b *testing.B) {
		g.ResetTraffic()
		for b.Loop() {
			b.StopTimer()
			f, err := New(Config{URL: repo.HTTPURL(), Dir: b.TempDir()}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := f.fetch(b.Context(), 1); err != nil {
				b.Fatal(err)
			}
		}
		reportTraffic(b, g)
	})
}
