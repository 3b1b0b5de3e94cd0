package forge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// giteaClient is a client of repo on g with a token of the given scopes.
func giteaClient(t *testing.T, g *testenv.Gitea, repo *testenv.GiteaRepo, scopes ...string) *Client {
	t.Helper()
	tf := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tf, []byte(g.NewToken(t, "berth", scopes...)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{RepoURL: repo.CloneURL(), Type: Gitea, TokenFile: tf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGitea_StatusesPullRequestsAndLeastScopes runs the client against a
// real Gitea with the least-scoped tokens docs/operations.md names, and
// reads back through Gitea's API what berth did.
func TestGitea_StatusesPullRequestsAndLeastScopes(t *testing.T) {
	g := testenv.StartGitea(t)
	repo := g.CreateRepo(t, "config")
	base := repo.CommitFiles(t, "main", "prod 1.0", map[string]string{
		"envs/prod/.env":    "DIGEST=sha256:aaaa\n",
		"envs/staging/.env": "DIGEST=sha256:bbbb\n",
	})
	ctx := context.Background()

	// The status token: write:repository only.
	st := giteaClient(t, g, repo, "write:repository")
	if st.Repo() != "berth/config" || st.Kind() != Gitea {
		t.Fatalf("resolved %s %s", st.Kind(), st.Repo())
	}
	hostile := "rolled back on web-1:\x1b[2J web unhealthy\nsee https://u:secret@ci.example.org/"
	if err := st.SetStatus(ctx, base, Status{State: Failure, Context: "berth/prod", Description: hostile, TargetURL: "http://127.0.0.1:9/status"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetStatus(ctx, base, Status{State: Superseded, Context: "berth/staging", Description: "not deployed: superseded"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]testenv.GiteaStatus{}
	for _, s := range repo.Statuses(t, base) { // newest first
		if _, ok := got[s.Context]; !ok {
			got[s.Context] = s
		}
	}
	if s := got["berth/prod"]; s.Status != "failure" || s.Description != "rolled back on web-1: [2J web unhealthy see https://ci.example.org/" || s.TargetURL != "http://127.0.0.1:9/status" {
		t.Errorf("berth/prod = %+v", s)
	}
	if s := got["berth/staging"]; s.Status != "warning" {
		t.Errorf("berth/staging = %+v", s)
	}
	var combined struct {
		State string `json:"state"`
	}
	g.API(t, http.MethodGet, "/repos/"+repo.Name+"/commits/"+base+"/status", nil, &combined)
	if combined.State != "failure" {
		t.Errorf("combined state %q", combined.State)
	}

	// The promotion token: write:repository and write:issue (comments).
	pr := giteaClient(t, g, repo, "write:repository", "write:issue")
	head := PromoteBranch("staging", "prod")
	files := []FileChange{{Path: "envs/prod/.env", Old: []byte("DIGEST=sha256:aaaa\n"), New: []byte("DIGEST=sha256:bbbb\n")}}
	if _, err := pr.CommitFiles(ctx, Commit{Branch: head, BaseBranch: "main", BaseSHA: base, Message: "promote staging to prod", Files: files}); err != nil {
		t.Fatal(err)
	}
	opened, err := pr.OpenPR(ctx, NewPR{Head: head, Base: "main", Title: "Promote staging to prod", Body: "<!-- berth-plan -->\nplan one"})
	if err != nil {
		t.Fatal(err)
	}
	// A newer revision: the branch is rewritten, the same PR updated.
	files[0].New = []byte("DIGEST=sha256:cccc\n")
	if _, err := pr.CommitFiles(ctx, Commit{Branch: head, BaseBranch: "main", BaseSHA: base, Message: "promote staging to prod", Files: files}); err != nil {
		t.Fatalf("a second promotion onto the same branch: %v", err)
	}
	found, err := pr.FindPR(ctx, head, "main")
	if err != nil || found == nil || found.Number != opened.Number {
		t.Fatalf("find: %+v %v", found, err)
	}
	if err := pr.UpdatePR(ctx, found.Number, "Promote staging to prod", "plan two"); err != nil {
		t.Fatal(err)
	}
	var content struct {
		Content string `json:"content"`
	}
	g.API(t, http.MethodGet, "/repos/"+repo.Name+"/contents/envs/prod/.env?ref="+head, nil, &content)
	if b, _ := base64.StdEncoding.DecodeString(content.Content); string(b) != "DIGEST=sha256:cccc\n" {
		t.Errorf("the branch holds %q", b)
	}
	// The status token may not comment: least scope holds.
	if err := st.Comment(ctx, found.Number, "hello"); !Refused(err) {
		t.Errorf("a comment with write:repository only: want a refusal, got %v", err)
	}
	if err := pr.ClosePR(ctx, found.Number, "staging rolled back: closing"); err != nil {
		t.Fatal(err)
	}
	var after struct {
		State  string `json:"state"`
		Body   string `json:"body"`
		Merged bool   `json:"merged"`
	}
	g.API(t, http.MethodGet, fmt.Sprintf("/repos/%s/pulls/%d", repo.Name, found.Number), nil, &after)
	if after.State != "closed" || after.Merged || after.Body != "plan two" {
		t.Errorf("pull request after close: %+v", after)
	}
	var comments []struct {
		Body string `json:"body"`
	}
	g.API(t, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/comments", repo.Name, found.Number), nil, &comments)
	if len(comments) != 1 || comments[0].Body != "staging rolled back: closing" {
		t.Errorf("comments %+v", comments)
	}
	if found, _ := pr.FindPR(ctx, head, "main"); found == nil || !found.Closed {
		t.Errorf("a closed PR is found as declined (Closed), never as open: %+v", found)
	}

	// The reporter through the real forge: deploy end → status visible.
	rep := NewReporter(st, ReporterOptions{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go rep.Run(rctx)
	next := repo.CommitFiles(t, "main", "prod 1.1", map[string]string{"envs/prod/.env": "DIGEST=sha256:dddd\n"})
	start := time.Now()
	rep.Update("prod", next, Success, "live on web-1")
	for {
		ss := repo.Statuses(t, next)
		if len(ss) == 1 && ss[0].Status == "success" {
			break
		}
		if time.Since(start) > time.Minute {
			t.Fatalf("status not visible after a minute: %+v", ss)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("deploy end → status visible on Gitea: %s", time.Since(start).Round(time.Millisecond))
	if !strings.HasPrefix(st.cfg.APIURL, "http://127.0.0.1:") {
		t.Errorf("api url %s", st.cfg.APIURL)
	}
}

// TestGitea_AForkPRWithBerthsBranchNameIsNotBerths: anyone may fork the
// config repository and open a PR from a branch of theirs named
// berth/promote-staging-prod. berth must not take it for its own — it
// would write its plan (of another diff) into that PR's body, where a
// reviewer trusts it — but open its own from the base repository.
func TestGitea_AForkPRWithBerthsBranchNameIsNotBerths(t *testing.T) {
	g := testenv.StartGitea(t)
	repo := g.CreateRepo(t, "config")
	base := repo.CommitFiles(t, "main", "prod 1.0", map[string]string{"envs/prod/.env": "DIGEST=sha256:aaaa\n"})
	ctx := context.Background()
	head := PromoteBranch("staging", "prod")

	// mallory forks, pushes the branch name, and opens a PR into main.
	tok := g.NewUser(t, "mallory", "write:repository", "write:issue", "read:user")
	as := func(method, path string, in any) int {
		t.Helper()
		return giteaCall(t, g.URL, tok, method, path, in)
	}
	if code := as(http.MethodPost, "/repos/"+repo.Name+"/forks", map[string]any{}); code != http.StatusAccepted {
		t.Fatalf("fork: %d", code)
	}
	in := map[string]any{"branch": "main", "new_branch": head, "message": "evil", "files": []map[string]string{
		{"operation": "update", "path": "envs/prod/.env", "content": base64.StdEncoding.EncodeToString([]byte("DIGEST=sha256:evil\n")), "sha": blobID([]byte("DIGEST=sha256:aaaa\n"))},
	}}
	if code := as(http.MethodPost, "/repos/mallory/config/contents", in); code != http.StatusCreated {
		t.Fatalf("commit to the fork: %d", code)
	}
	if code := as(http.MethodPost, "/repos/"+repo.Name+"/pulls", map[string]string{"head": "mallory:" + head, "base": "main", "title": "Promote staging to prod"}); code != http.StatusCreated {
		t.Fatalf("the fork's PR: %d", code)
	}

	pc := giteaClient(t, g, repo, "write:repository", "write:issue")
	pr, err := pc.FindPR(ctx, head, "main")
	if err != nil || pr != nil {
		t.Fatalf("FindPR found the fork's PR as berth's: %+v %v", pr, err)
	}
	if _, err := pc.CommitFiles(ctx, Commit{Branch: head, BaseBranch: "main", BaseSHA: base, Message: "promote",
		Files: []FileChange{{Path: "envs/prod/.env", Old: []byte("DIGEST=sha256:aaaa\n"), New: []byte("DIGEST=sha256:bbbb\n")}}}); err != nil {
		t.Fatal(err)
	}
	mine, err := pc.OpenPR(ctx, NewPR{Head: head, Base: "main", Title: "Promote staging to prod", Body: "berth's"})
	if err != nil {
		t.Fatal(err)
	}
	if pr, err := pc.FindPR(ctx, head, "main"); err != nil || pr == nil || pr.Number != mine.Number {
		t.Errorf("FindPR = %+v %v, want berth's own #%d", pr, err, mine.Number)
	}
}

// giteaCall calls Gitea's API with a token and says the status code.
func giteaCall(t *testing.T, url, token, method, path string, in any) int {
	t.Helper()
	b, _ := json.Marshal(in)
	req, err := http.NewRequest(method, url+"/api/v1"+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(resp.Body)
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, msg)
	}
	return resp.StatusCode
}
