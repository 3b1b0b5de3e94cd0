package forge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
)

const (
	ghSHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
	glSHA = "18f3e63d05582537db6d183d9d557be09e1f90c8"
)

func TestContract_GitHubStatuses(t *testing.T) {
	c, r, _, _ := contractClient(t, GitHub, "octocat/hello-world", "github-status")
	ctx := context.Background()
	if err := c.SetStatus(ctx, ghSHA, Status{State: Success, Context: "berth/prod", Description: "live on 3/3 hosts", TargetURL: "https://berth.example.org/status"}); err != nil {
		t.Fatal(err)
	}
	// A hostile reason: an escape sequence, a line break, credentials in
	// a URL, and more than GitHub's 140 characters.
	long := "rolled back on web-1: web unhealthy 2.8 s after the switch;\x1b[31msee https://user:hunter2@ci.example.org/x\n  and the log of every host that ran this revision of the service to learn more about what happened there"
	if err := c.SetStatus(ctx, ghSHA, Status{State: Failure, Context: "berth/prod", Description: long, TargetURL: "javascript:alert(1)"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetStatus(ctx, ghSHA, Status{State: Superseded, Context: "berth/prod", Description: "not deployed: superseded by 0123456789ab"}); err != nil {
		t.Fatal(err)
	}
	err := c.SetStatus(ctx, ghSHA, Status{State: Pending, Context: "berth/prod", Description: "deploying"})
	if !Refused(err) || failure.IsOutage(err) || !strings.Contains(err.Error(), "Bad credentials") {
		t.Errorf("401: want a refusal naming the forge's message, got %v", err)
	}
	if strings.Contains(err.Error(), "TOKEN") {
		t.Errorf("the error holds the token: %v", err)
	}
	err = c.SetStatus(ctx, ghSHA, Status{State: Pending, Context: "berth/prod", Description: "deploying"})
	if !failure.IsOutage(err) || Refused(err) {
		t.Errorf("502: want an outage, got %v", err)
	}
	r.done()
	if c.Calls() != 5 {
		t.Errorf("%d calls, want 5", c.Calls())
	}
}

func TestContract_GitHubRateLimits(t *testing.T) {
	c, r, clock, _ := contractClient(t, GitHub, "octocat/hello-world", "github-ratelimit")
	ctx := context.Background()
	post := func() error {
		return c.SetStatus(ctx, ghSHA, Status{State: Pending, Context: "berth/prod", Description: "deploying"})
	}
	start := clock.now()
	var rl *RateLimitedError

	// Primary limit: no requests remaining; wait for x-ratelimit-reset.
	err := post()
	if !errors.As(err, &rl) || !failure.IsOutage(err) || !rl.Until.Equal(time.Unix(1767229201, 0)) {
		t.Fatalf("primary limit: want an outage until the reset, got %v", err)
	}
	calls := c.Calls()
	if err := post(); !errors.As(err, &rl) || c.Calls() != calls {
		t.Fatalf("during the limit the client must make no request: %v (%d calls)", err, c.Calls())
	}
	clock.add(rl.Until.Sub(clock.now()))

	// Secondary limit with retry-after: that many seconds.
	if err := post(); !errors.As(err, &rl) || rl.Until.Sub(clock.now()) != 30*time.Second {
		t.Fatalf("secondary limit with retry-after 30: got %v", err)
	}
	clock.add(30 * time.Second)
	// Secondary limit (429) without retry-after, the second in a row: a
	// minute, doubled.
	if err := post(); !errors.As(err, &rl) || rl.Until.Sub(clock.now()) != 2*time.Minute {
		t.Fatalf("second secondary limit in a row without retry-after: want 2m, got %v", err)
	}
	if err := post(); !errors.As(err, &rl) {
		t.Fatalf("still limited: %v", err)
	}
	clock.add(2 * time.Minute)
	// Success, but it spent the last request: the next waits for the reset.
	if err := post(); err != nil {
		t.Fatal(err)
	}
	if err := post(); !errors.As(err, &rl) || !rl.Until.Equal(time.Unix(1767231001, 0)) {
		t.Fatalf("after the budget is spent: want a wait for the reset, got %v", err)
	}
	r.done()
	// Mutating requests are at least a second apart (GitHub's advice).
	for _, d := range clock.slept {
		if d > time.Second {
			t.Errorf("slept %s between writes, want at most 1s", d)
		}
	}
	_ = start
}

func TestContract_GitHubPromotionPR(t *testing.T) {
	c, r, clock, _ := contractClient(t, GitHub, "octocat/hello-world", "github-promote")
	ctx := context.Background()
	head := PromoteBranch("staging", "prod")
	pr, err := c.FindPR(ctx, head, "main")
	if err != nil || pr != nil {
		t.Fatalf("find: %v %v", pr, err)
	}
	sha, err := c.CommitFiles(ctx, Commit{
		Branch: head, BaseBranch: "main", BaseSHA: "7638417db6d59f3c431d3e1f261cc637155684cd", Message: "promote staging to prod",
		Files: []FileChange{{Path: "envs/prod/.env", Old: []byte("WEB=registry.example.org/web@sha256:aaaa\n"), New: []byte("WEB=registry.example.org/web@sha256:bbbb\n")}},
	})
	if err != nil || sha != "7633417db6d59f3c431d3e1f261cc637155684ce" {
		t.Fatalf("commit: %s %v", sha, err)
	}
	pr, err = c.OpenPR(ctx, NewPR{Head: head, Base: "main", Title: "Promote staging to prod", Body: "plan"})
	if err != nil || pr.Number != 1347 || pr.URL != "https://github.com/octocat/hello-world/pull/1347" {
		t.Fatalf("open: %+v %v", pr, err)
	}
	pr, err = c.FindPR(ctx, head, "main")
	if err != nil || pr == nil || pr.Number != 1347 {
		t.Fatalf("find the open one: %+v %v", pr, err)
	}
	if err := c.UpdatePR(ctx, pr.Number, "Promote staging to prod", "newer plan"); err != nil {
		t.Fatal(err)
	}
	if err := c.ClosePR(ctx, pr.Number, "staging rolled back: closing"); err != nil {
		t.Fatal(err)
	}
	// None open: the newest closed without a merge, declined.
	if pr, err = c.FindPR(ctx, head, "main"); err != nil || pr == nil || pr.Number != 1347 || !pr.Closed || pr.Body != "newer plan" {
		t.Fatalf("find the declined one: %+v %v", pr, err)
	}
	r.done()
	if len(clock.slept) == 0 {
		t.Error("GitHub writes in a row must be paced")
	}
}

func TestContract_GitLabStatuses(t *testing.T) {
	c, r, clock, _ := contractClient(t, GitLab, "ops/deploy/config", "gitlab-status")
	ctx := context.Background()
	if err := c.SetStatus(ctx, glSHA, Status{State: Pending, Context: "berth/prod", Description: "deploying on web-1: servers", TargetURL: "https://berth.example.org/status"}); err != nil {
		t.Fatal(err)
	}
	// running → running is refused by GitLab with a 400: the status
	// already says so, which is no failure.
	if err := c.SetStatus(ctx, glSHA, Status{State: Pending, Context: "berth/prod", Description: "deploying on web-1: retire"}); err != nil {
		t.Fatalf("a repeated state: %v", err)
	}
	if err := c.SetStatus(ctx, glSHA, Status{State: Success, Context: "berth/prod", Description: "live on 3/3 hosts"}); err != nil {
		t.Fatal(err)
	}
	// A commit superseded while it deploys: GitLab's running status may
	// become canceled (never skipped: "Cannot transition status via
	// :skip from :running", app/models/commit_status.rb).
	other := "5c3a7d8b5b57875f334f61aebed695e2e4193db5"
	if err := c.SetStatus(ctx, other, Status{State: Pending, Context: "berth/prod", Description: "deploying on web-1: prepare"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetStatus(ctx, other, Status{State: Superseded, Context: "berth/prod", Description: "not deployed: superseded by 18f3e63d0558"}); err != nil {
		t.Fatal(err)
	}
	held := Status{State: Error, Context: "berth/prod", Description: "held: revision halted fleet-wide"}
	err := c.SetStatus(ctx, other, held)
	var rl *RateLimitedError
	if !errors.As(err, &rl) || rl.Until.Sub(clock.now()) != time.Minute {
		t.Fatalf("429 with Retry-After 60: got %v", err)
	}
	clock.add(time.Minute)
	if err := c.SetStatus(ctx, other, held); !Refused(err) {
		t.Fatalf("404: want a refusal, got %v", err)
	}
	r.done()
	if len(clock.slept) != 0 {
		t.Errorf("GitLab needs no pacing: slept %v", clock.slept)
	}
}

func TestContract_GitLabPromotionMR(t *testing.T) {
	c, r, _, _ := contractClient(t, GitLab, "ops/deploy/config", "gitlab-promote")
	ctx := context.Background()
	head := PromoteBranch("staging", "prod")
	if pr, err := c.FindPR(ctx, head, "main"); err != nil || pr != nil {
		t.Fatalf("find: %v %v", pr, err)
	}
	sha, err := c.CommitFiles(ctx, Commit{Branch: head, BaseBranch: "main", BaseSHA: "ed899a2f4b50b4370feeea94676502b42383c746", Message: "promote staging to prod",
		Files: []FileChange{{Path: "envs/prod/compose.yaml", New: []byte("services: {}\n")}}})
	if err != nil || sha != "ed899a2f4b50b4370feeea94676502b42383c747" {
		t.Fatalf("commit: %s %v", sha, err)
	}
	pr, err := c.OpenPR(ctx, NewPR{Head: head, Base: "main", Title: "Promote staging to prod", Body: "plan"})
	if err != nil || pr.Number != 1 || !strings.HasSuffix(pr.URL, "/merge_requests/1") {
		t.Fatalf("open: %+v %v", pr, err)
	}
	if pr, err = c.FindPR(ctx, head, "main"); err != nil || pr == nil || pr.Number != 1 {
		t.Fatalf("find the open one: %+v %v", pr, err)
	}
	if err := c.UpdatePR(ctx, 1, "Promote staging to prod", "newer plan"); err != nil {
		t.Fatal(err)
	}
	if err := c.ClosePR(ctx, 1, "staging rolled back: closing"); err != nil {
		t.Fatal(err)
	}
	if pr, err = c.FindPR(ctx, head, "main"); err != nil || pr == nil || pr.Number != 1 || !pr.Closed {
		t.Fatalf("find the declined one: %+v %v", pr, err)
	}
	r.done()
}

// TestGitLab_OnlyARepeatedStateIsTakenAsDone: GitLab refuses a status
// that repeats the current one ("via :run from :running") — that is done;
// a transition it refuses otherwise ("via :skip from :running") is not:
// the status would stay "running" on the commit for good, unsaid.
func TestGitLab_OnlyARepeatedStateIsTakenAsDone(t *testing.T) {
	msg := ""
	c := serverClient(t, GitLab, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"message": msg})
	})
	ctx := context.Background()
	msg = "Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"
	if err := c.SetStatus(ctx, glSHA, Status{State: Pending, Context: "berth/prod"}); err != nil {
		t.Errorf("running → running: %v", err)
	}
	msg = "Cannot transition status via :drop from :failed"
	if err := c.SetStatus(ctx, glSHA, Status{State: Failure, Context: "berth/prod"}); err != nil {
		t.Errorf("failed → failed: %v", err)
	}
	msg = "Cannot transition status via :success from :canceled"
	if err := c.SetStatus(ctx, glSHA, Status{State: Success, Context: "berth/prod"}); !Refused(err) {
		t.Errorf("canceled → success refused by GitLab: want a refusal, got %v", err)
	}
}
