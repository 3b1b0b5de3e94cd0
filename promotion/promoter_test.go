package promotion

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/forge"
)

// fakeForge keeps one PR and records the calls.
type fakeForge struct {
	mu    sync.Mutex
	pr    *forge.PR
	calls []string
	files []forge.FileChange
	msg   string
}

func (f *fakeForge) log(s string) { f.calls = append(f.calls, s) }

func (f *fakeForge) FindPR(_ context.Context, head, base string) (*forge.PR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("find " + head + " " + base)
	if f.pr == nil {
		return nil, nil
	}
	pr := *f.pr
	return &pr, nil
}

func (f *fakeForge) OpenPR(_ context.Context, p forge.NewPR) (*forge.PR, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("open " + p.Title)
	f.pr = &forge.PR{Number: 1, Head: p.Head, Base: p.Base, Title: p.Title, Body: p.Body}
	return f.pr, nil
}

func (f *fakeForge) UpdatePR(_ context.Context, n int, title, body string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log(fmt.Sprintf("update %d %s", n, title))
	f.pr.Title, f.pr.Body = title, body
	return nil
}

func (f *fakeForge) ClosePR(_ context.Context, n int, why string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log(fmt.Sprintf("close %d: %s", n, why))
	f.pr = nil
	return nil
}

func (f *fakeForge) CommitFiles(_ context.Context, cm forge.Commit) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("commit " + cm.Branch + " on " + cm.BaseSHA[:4])
	f.files, f.msg = cm.Files, cm.Message
	return strings.Repeat("f", 40), nil
}

// opened is the PR and the last commit message, read under the lock.
func (f *fakeForge) opened() (*forge.PR, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pr == nil {
		return nil, f.msg
	}
	pr := *f.pr
	return &pr, f.msg
}

func (f *fakeForge) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

const img = "registry.example.org/shop@sha256:"

// tree writes a checkout whose staging runs digest d and prod digest a.
func tree(t *testing.T, d string) string {
	dir := t.TempDir()
	w := func(p, c string) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644)
	}
	svc := func(digest string) string {
		return "services:\n  web:\n    image: " + img + strings.Repeat(digest, 64) + "\n    x-berth: {role: worker}\n"
	}
	w("envs/staging/compose.yaml", svc(d)+"x-berth:\n  promote: {to: prod, after: 30m}\n")
	w("envs/prod/compose.yaml", svc("a"))
	return dir
}

func TestPromoter_OpensUpdatesAndClosesOnRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r1, r2, r3 := strings.Repeat("1", 40), strings.Repeat("2", 40), strings.Repeat("3", 40)
		dirs := map[string]string{r1: tree(t, "b"), r2: tree(t, "c"), r3: tree(t, "d")}
		f := &fakeForge{}
		p := New(f, f, func(_ context.Context, rev string) (string, string, string, error) {
			return dirs[rev], "config", "shop " + rev[:1] + " `@everyone`", nil
		}, Options{Env: "staging", Branch: "main"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go p.Run(ctx)
		spec := &envs.PromoteSpec{To: "prod", After: 30 * time.Minute}

		p.SetSpec(r1, spec)
		p.Observe(r1, forge.Success, "live on 3/3 hosts")
		time.Sleep(29 * time.Minute)
		if len(f.got()) != 0 {
			t.Fatalf("acted before after: %q", f.got())
		}
		time.Sleep(2 * time.Minute)
		want := []string{"find berth/promote-staging-prod main", "commit berth/promote-staging-prod on 1111", "open Promote staging to prod: `` shop 1 `@everyone` ``"}
		if got := f.got(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("got %q, want %q", got, want)
		}
		if f.files[0].Path != "config/envs/prod/compose.yaml" || !strings.Contains(string(f.files[0].New), strings.Repeat("b", 64)) {
			t.Errorf("files %+v", f.files)
		}
		body := f.pr.Body
		for _, want := range []string{marker("staging", r1), "Merging this is the promotion", "**replace** `web`", "<!-- berth-plan -->"} {
			if !strings.Contains(body, want) {
				t.Errorf("body lacks %q:\n%s", want, body)
			}
		}

		// A newer revision deploys, then is healthy: the same PR updated.
		p.Observe(r2, forge.Pending, "live on 1/3 hosts")
		p.SetSpec(r2, spec)
		p.Observe(r2, forge.Success, "live on 3/3 hosts")
		time.Sleep(31 * time.Minute)
		got := f.got()[3:]
		if len(got) != 3 || got[2] != "update 1 Promote staging to prod: `` shop 2 `@everyone` ``" {
			t.Fatalf("after a newer healthy revision: %q", got)
		}

		// A rollback closes it with the reason; the revision it proposed,
		// live again, is not proposed again.
		p.Observe(r3, forge.Failure, "rolled back on web-1: web unhealthy")
		time.Sleep(time.Second)
		got = f.got()[6:]
		if len(got) != 2 || !strings.HasPrefix(got[1], "close 1: `staging` did not take `333333333333`: `rolled back on web-1: web unhealthy`") {
			t.Fatalf("after a rollback: %q", got)
		}
		p.Observe(r2, forge.Success, "live on 3/3 hosts")
		time.Sleep(time.Hour)
		if got := f.got(); len(got) != 8 {
			t.Errorf("the declined revision was proposed again: %q", got[8:])
		}
	})
}

// TestPromoter_ResetForgetsAHealthyRevision: an agent that loses the
// env's reporter role proposes nothing from what it saw as the holder.
func TestPromoter_ResetForgetsAHealthyRevision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r1 := strings.Repeat("1", 40)
		dir := tree(t, "b")
		f := &fakeForge{}
		p := New(f, f, func(context.Context, string) (string, string, string, error) { return dir, "", "shop 1", nil }, Options{Env: "staging", Branch: "main"})
		p.SetSpec(r1, &envs.PromoteSpec{To: "prod", After: 30 * time.Minute})
		p.Observe(r1, forge.Failure, "refused on web-2: invalid")
		p.Observe(r1, forge.Success, "live on 3/3 hosts")
		p.Reset()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go p.Run(ctx)
		time.Sleep(time.Hour)
		if got := f.got(); len(got) != 0 {
			t.Errorf("a promoter that lost the role acted: %q", got)
		}
	})
}

// promotionForge is a fake forge of the tests.
type promotionForge interface {
	Forge
	Committer
}

// healthyFor runs a promoter of staging (x-berth.promote {to: prod,
// after: 1m}) on f, whose revision 1111… with subject turns healthy, for
// d (in a synctest bubble).
func healthyFor(t *testing.T, f promotionForge, subject string, d time.Duration) {
	r1, dir := strings.Repeat("1", 40), tree(t, "b")
	p := New(f, f, func(context.Context, string) (string, string, string, error) { return dir, "", subject, nil }, Options{Env: "staging", Branch: "main"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	p.SetSpec(r1, &envs.PromoteSpec{To: "prod", After: time.Minute})
	p.Observe(r1, forge.Success, "live on 3/3 hosts")
	time.Sleep(d)
}

// refusingForge refuses the first n calls of FindPR with an API error.
type refusingForge struct {
	*fakeForge
	status, n int
}

func (f *refusingForge) FindPR(ctx context.Context, head, base string) (*forge.PR, error) {
	f.mu.Lock()
	if f.n > 0 {
		f.n--
		f.log("find refused")
		f.mu.Unlock()
		return nil, &forge.APIError{Method: "GET", Path: "/pulls", Status: f.status}
	}
	f.mu.Unlock()
	return f.fakeForge.FindPR(ctx, head, base)
}

// TestPromoter_ARefusedTokenIsRetried: a promotion token refused (401,
// 403: expired, rotated, lacking a scope) waits with backoff for the fix
// (its file is read again on every request); the revision is not given up.
func TestPromoter_ARefusedTokenIsRetried(t *testing.T) {
	for _, code := range []int{401, 403} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &refusingForge{fakeForge: &fakeForge{}, status: code, n: 2}
				healthyFor(t, f, "shop 1", time.Hour)
				if pr, _ := f.opened(); pr == nil {
					t.Errorf("%d: no PR after the token was fixed: %q", code, f.got())
				}
			})
		})
	}
}

// TestPromoter_ASubjectPingsNoOneAndReferencesNothing: the healthy
// revision's commit subject is the repository's (hostile): in the PR's
// title it is a code span (GitLab notifies mentions in a title; forges
// render HTML and references there), and the commit berth writes does not
// repeat it (each rewrite of the branch would add a "referenced this
// issue" event to #12 on GitHub and GitLab).
func TestPromoter_ASubjectPingsNoOneAndReferencesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeForge{}
		healthyFor(t, f, "fix @sec-team #12 <b>x</b>\u202e", time.Hour)
		pr, msg := f.opened()
		if pr == nil {
			t.Fatalf("no PR: %q", f.got())
		}
		if want := "Promote staging to prod: `fix @sec-team #12 <b>x</b>`"; pr.Title != want {
			t.Errorf("title %q, want %q", pr.Title, want)
		}
		if strings.ContainsAny(msg, "@#<") {
			t.Errorf("the commit message repeats the subject: %q", msg)
		}
	})
}

// TestPromoter_AClosedPRDeclinesItsRevision: a promotion PR closed
// without a merge — by a person, or by a rollback before the agent
// restarted or the role moved — is not proposed again for its revision;
// a newer revision opens a new PR (never edits the closed one).
func TestPromoter_AClosedPRDeclinesItsRevision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r1, r2 := strings.Repeat("1", 40), strings.Repeat("2", 40)
		dirs := map[string]string{r1: tree(t, "b"), r2: tree(t, "c")}
		f := &fakeForge{pr: &forge.PR{Number: 7, Closed: true, Head: "berth/promote-staging-prod", Base: "main", Body: marker("staging", r1) + "\nclosed by a person"}}
		p := New(f, f, func(_ context.Context, rev string) (string, string, string, error) { return dirs[rev], "", "shop", nil }, Options{Env: "staging", Branch: "main"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go p.Run(ctx)
		spec := &envs.PromoteSpec{To: "prod", After: time.Minute}
		p.SetSpec(r1, spec)
		p.Observe(r1, forge.Success, "live on 3/3 hosts")
		time.Sleep(time.Hour)
		if got := f.got(); strings.Join(got, "|") != "find berth/promote-staging-prod main" {
			t.Fatalf("a declined revision: %q", got)
		}
		p.SetSpec(r2, spec)
		p.Observe(r2, forge.Success, "live on 3/3 hosts")
		time.Sleep(time.Hour)
		if got := f.got()[1:]; len(got) != 3 || !strings.HasPrefix(got[2], "open ") {
			t.Fatalf("a newer revision after a declined one: %q", got)
		}
	})
}
