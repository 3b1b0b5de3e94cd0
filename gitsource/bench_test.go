package gitsource

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// The config-repo benchmarks of docs/benchmarks.md: a generated repository
// of 10,000 commits and 2,000 files served over smart HTTP (git
// http-backend), polled and fetched by berth (go-git) and, in the same run,
// by the git CLI. Run with scripts/bench-git or:
//
//	go test -run '^$' -bench . -benchtime 20x ./gitsource
const (
	benchCommits = 10000
	benchFiles   = 2000
)

// benchRepo generates the repository with git fast-import (seconds, not
// minutes) on a fresh Git server.
func benchRepo(b *testing.B) (*testenv.GitServer, *testenv.GitRepo) {
	b.Helper()
	g := testenv.StartGitServer(b)
	repo := g.NewRepo(b, "big")
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = repo.Bare
	cmd.Env = testenv.GitEnv()
	in, _ := cmd.StdinPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	for i := 1; i <= benchCommits; i++ {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@berth.invalid> %d +0000\ndata <<EOM\ncommit %d\nEOM\n", 1700000000+i, i)
		if i == 1 {
			for f := 0; f < benchFiles; f++ {
				content := fmt.Sprintf("# file %d\nkey: value-%d\n", f, f)
				fmt.Fprintf(w, "M 100644 inline envs/prod/conf/file-%04d.yaml\ndata %d\n%s\n", f, len(content), content)
			}
		} else {
			content := fmt.Sprintf("# file %d\nkey: changed-in-%d\n", i%benchFiles, i)
			fmt.Fprintf(w, "M 100644 inline envs/prod/conf/file-%04d.yaml\ndata %d\n%s\n", i%benchFiles, len(content), content)
		}
	}
	w.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("fast-import: %v\n%s", err, stderr.String())
	}
	return g, repo
}

// push adds one commit on top of the branch, as a merged PR would.
func push(b *testing.B, repo *testenv.GitRepo, n int) {
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
	git("clone", "-q", "--depth", "1", "--no-checkout", repo.FileURL(), ".")
	git("commit", "-q", "--allow-empty", "-m", fmt.Sprintf("bench change %d", n))
	git("push", "-q", "origin", "HEAD:refs/heads/main")
}

func reportTraffic(b *testing.B, g *testenv.GitServer) {
	reqs, bytes := g.Traffic()
	b.ReportMetric(float64(bytes)/float64(b.N), "B/op-wire")
	b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
}

func BenchmarkPollNoChange(b *testing.B) {
	g, repo := benchRepo(b)
	b.Run("berth", func(b *testing.B) {
		s, err := New(Config{URL: repo.HTTPURL(), Dir: b.TempDir()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		g.ResetTraffic()
		for b.Loop() {
			if _, err := s.Head(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
		reportTraffic(b, g)
	})
	b.Run("git-ls-remote", func(b *testing.B) {
		g.ResetTraffic()
		for b.Loop() {
			cmd := exec.Command("git", "ls-remote", repo.HTTPURL(), "refs/heads/main")
			cmd.Env = testenv.GitEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
		}
		reportTraffic(b, g)
	})
}

func BenchmarkFetchChangedHead(b *testing.B) {
	g, repo := benchRepo(b)
	b.Run("berth-first", func(b *testing.B) {
		g.ResetTraffic()
		for b.Loop() {
			b.StopTimer()
			s, err := New(Config{URL: repo.HTTPURL(), Dir: b.TempDir()}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			head, err := s.Head(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Fetch(b.Context(), head, ""); err != nil {
				b.Fatal(err)
			}
		}
		reportTraffic(b, g)
	})
	b.Run("berth-incremental", func(b *testing.B) {
		s, err := New(Config{URL: repo.HTTPURL(), Dir: b.TempDir()}, nil)
		if err != nil {
			b.Fatal(err)
		}
		deployed, _ := s.Head(b.Context())
		if _, err := s.Fetch(b.Context(), deployed, ""); err != nil {
			b.Fatal(err)
		}
		g.ResetTraffic()
		n := 0
		for b.Loop() {
			b.StopTimer()
			n++
			push(b, repo, n)
			g.ResetTraffic() // the push is not the fetch's traffic
			b.StartTimer()
			head, err := s.Head(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Fetch(b.Context(), head, deployed); err != nil {
				b.Fatal(err)
			}
			deployed = head
		}
		reportTraffic(b, g) // the last iteration's traffic, per op
		b.ReportMetric(0, "B/op-wire")
		reqs, bytes := g.Traffic()
		b.ReportMetric(float64(bytes), "B/fetch-wire")
		b.ReportMetric(float64(reqs), "requests/fetch")
	})
	b.Run("git-fetch-depth1", func(b *testing.B) {
		dir := b.TempDir()
		gitIn := func(args ...string) {
			cmd := exec.Command("git", args...)
			cmd.Dir = dir
			cmd.Env = testenv.GitEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("git %v: %v\n%s", args, err, out)
			}
		}
		gitIn("clone", "-q", "--depth", "1", "--single-branch", "--no-tags", repo.HTTPURL(), ".")
		n := 1000000
		g.ResetTraffic()
		for b.Loop() {
			b.StopTimer()
			n++
			push(b, repo, n)
			g.ResetTraffic()
			b.StartTimer()
			gitIn("fetch", "-q", "--depth", "1", "--no-tags", "origin", "main")
			gitIn("checkout", "-q", "--detach", "FETCH_HEAD")
		}
		reqs, bytes := g.Traffic()
		b.ReportMetric(float64(bytes), "B/fetch-wire")
		b.ReportMetric(float64(reqs), "requests/fetch")
	})
	b.Run("git-clone-depth1", func(b *testing.B) {
		g.ResetTraffic()
		for b.Loop() {
			b.StopTimer()
			dir := filepath.Join(b.TempDir(), "c")
			b.StartTimer()
			cmd := exec.Command("git", "clone", "-q", "--depth", "1", "--single-branch", "--no-tags", repo.HTTPURL(), dir)
			cmd.Env = testenv.GitEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			b.StopTimer()
			os.RemoveAll(dir)
			b.StartTimer()
		}
		reportTraffic(b, g)
	})
}
