package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/testenv"
)

type giteaPR struct {
	Number int    `json:"number"`
	State  string `json:"state"`
	Title  string `json:"title"`
	Body   string `json:"body"`
	Merged bool   `json:"merged"`
	Head   struct {
		Ref string `json:"ref"`
	} `json:"head"`
}

// TestE2E_GiteaStatusesPromotionPRAndPushWebhook runs the berth binary
// with a forge: block against a real Gitea that hosts the config repo: a
// push webhook from Gitea triggers the poll (the poll interval is an
// hour), each env's deploy result lands on the commit as a status, a
// staging env healthy for x-berth.promote.after opens a promotion PR with
// the plan (a newer healthy revision updates it), a rollback on staging
// closes it with the reason (berth never merges it), and a forge that
// hangs delays no deploy: the status follows once it answers again.
func TestE2E_GiteaStatusesPromotionPRAndPushWebhook(t *testing.T) {
	testenv.Parallel(t)
	g := testenv.StartGitea(t)
	bin := testenv.BerthBinary(t)
	d := testenv.Docker(t)
	staging, prod := "s"+d.RunID, "p"+d.RunID
	for _, env := range []string{staging, prod} {
		d.CleanupLabel(t, engine.LabelEnv, env)
		d.CleanupLabel(t, "com.docker.compose.project", env)
	}
	imgs := testenv.Images(t, testenv.StartRegistry(t))
	repo := g.CreateRepo(t, "config")

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	statusTok := write("status-token", g.NewToken(t, "status", "write:repository")+"\n")
	promoteTok := write("promote-token", g.NewToken(t, "promote", "write:repository", "write:issue")+"\n")
	hook := write("hook", "hook-secret-forge\n")
	apiPort := testenv.FreePort(t)
	// The forge API through a gate, to take it away; Git and the
	// webhook go straight to Gitea.
	gate := testenv.NewGate(t, strings.TrimPrefix(g.URL, "http://"))
	cfg := write("agent.yaml", fmt.Sprintf(`envs: [%s, %s]
state_dir: %s
repo: {url: %s, poll_interval: 1h}
deploy: {health_timeout: 2m, settle: 1s}
api: {listen: "127.0.0.1:%d", webhook_secret_file: %s}
forge:
  type: gitea
  api_url: http://%s/api/v1
  repo: %s
  token_file: %s
  promote: {token_file: %s}
`, staging, prod, filepath.Join(dir, "state"), repo.CloneURL(), apiPort, hook, gate.Addr, repo.Name, statusTok, promoteTok))

	worker := func(img testenv.AppImage, mode, promote string) string {
		s := fmt.Sprintf("services:\n  worker:\n    image: %s\n    environment: {APP_PORT: \"9000\", APP_MODE: %s}\n    x-berth: {role: worker}\n", img.Ref(), mode)
		if promote != "" {
			s += "x-berth:\n  promote: {to: " + promote + ", after: 2s}\n"
		}
		return s
	}
	stagingFile, prodFile := "envs/"+staging+"/compose.yaml", "envs/"+prod+"/compose.yaml"
	c1 := repo.CommitFiles(t, "main", "shop 1.0", map[string]string{
		stagingFile: worker(imgs.V1, "serve", prod), prodFile: worker(imgs.V1, "serve", ""),
	})
	// The push webhook, as an operator sets it up in Gitea.
	in := map[string]any{"type": "gitea", "active": true, "events": []string{"push"},
		"config": map[string]string{"url": fmt.Sprintf("http://127.0.0.1:%d/hooks/git", apiPort), "content_type": "json", "secret": "hook-secret-forge"}}
	if code := g.API(t, http.MethodPost, "/repos/"+repo.Name+"/hooks", in, nil); code != http.StatusCreated {
		t.Fatalf("webhook: %d", code)
	}

	agent := exec.Command(bin, "run", "--config", cfg)
	logFile, err := os.Create(filepath.Join(dir, "berth.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent.Stderr = logFile
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("berth's log:\n%s", b)
		}
	}()
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })

	statusOf := func(sha, ctx string) testenv.GiteaStatus {
		for _, s := range repo.Statuses(t, sha) { // newest first
			if s.Context == ctx {
				return s
			}
		}
		return testenv.GiteaStatus{}
	}
	waitStatus := func(sha, env, state string) testenv.GiteaStatus {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			s := statusOf(sha, "berth/"+env)
			if s.Status == state {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("status berth/%s of %.12s: %+v, want %s", env, sha, s, state)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	openPR := func() *giteaPR {
		var prs []giteaPR
		g.API(t, http.MethodGet, "/repos/"+repo.Name+"/pulls?state=all", nil, &prs)
		for i := range prs {
			if prs[i].Head.Ref == "berth/promote-"+staging+"-"+prod {
				return &prs[i]
			}
		}
		return nil
	}
	waitPR := func(what string, ok func(*giteaPR) bool) *giteaPR {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			if pr := openPR(); pr != nil && ok(pr) {
				return pr
			}
			if time.Now().After(deadline) {
				t.Fatalf("no promotion PR %s: %+v", what, openPR())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// 1. The first revision: both envs live; nothing to promote (prod
	// runs staging's digests already).
	host, _ := os.Hostname()
	if s := waitStatus(c1, staging, "success"); s.Description != "live on "+host {
		t.Errorf("staging status %+v", s)
	}
	waitStatus(c1, prod, "success")

	// 2. A new release on staging, delivered by the push webhook alone:
	// live, and after 2 s healthy, a PR gives prod its digest.
	c2 := repo.CommitFiles(t, "main", "shop 1.1 `@admins` <b>", map[string]string{stagingFile: worker(imgs.V2, "serve", prod)})
	start := time.Now()
	waitStatus(c2, staging, "success")
	seen := time.Now()
	t.Logf("push → deployed → status visible on Gitea: %s", seen.Sub(start).Round(time.Millisecond))
	if end := deployed(t, bin, cfg, staging, c2); !end.IsZero() {
		t.Logf("deploy end → status visible on Gitea: %s (polled every 100 ms)", seen.Sub(end).Round(time.Millisecond))
	}
	waitStatus(c2, prod, "success") // prod's pass on c2 changed nothing
	pr := waitPR("opened", func(p *giteaPR) bool { return p.State == "open" })
	for _, want := range []string{"<!-- berth-promote " + staging + " " + c2 + " -->", "Merging this is the promotion", "**replace** `worker`", imgs.V2.Digest[:19]} {
		if !strings.Contains(pr.Body, want) {
			t.Errorf("the PR body lacks %q:\n%s", want, pr.Body)
		}
	}

	// 3. A newer healthy revision of staging updates the same PR.
	c3 := repo.CommitFiles(t, "main", "shop 1.1 tuned", map[string]string{stagingFile: strings.Replace(worker(imgs.V2, "serve", prod), "APP_PORT: \"9000\"", "APP_PORT: \"9001\"", 1)})
	waitStatus(c3, staging, "success")
	upd := waitPR("updated", func(p *giteaPR) bool { return strings.Contains(p.Body, c3) })
	if upd.Number != pr.Number || upd.State != "open" {
		t.Errorf("a second PR or a closed one: %+v", upd)
	}

	// 4. A release that crashes on staging: rolled back, the status says
	// why, and the PR is closed with a comment, never merged.
	c4 := repo.CommitFiles(t, "main", "shop 1.2", map[string]string{stagingFile: worker(imgs.V2, "crash", prod)})
	if s := waitStatus(c4, staging, "failure"); !strings.HasPrefix(s.Description, "rolled back on "+host+": ") {
		t.Errorf("the rollback's status: %+v", s)
	}
	closed := waitPR("closed", func(p *giteaPR) bool { return p.State == "closed" })
	if closed.Merged {
		t.Error("berth merged a promotion PR")
	}
	var comments []struct {
		Body string `json:"body"`
	}
	g.API(t, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/comments", repo.Name, closed.Number), nil, &comments)
	if len(comments) != 1 || !strings.Contains(comments[0].Body, "did not take `"+c4[:12]+"`") {
		t.Errorf("close comment: %+v", comments)
	}

	// 5. The forge hangs (a black hole): the next release deploys as
	// fast as ever, and its status is posted once the forge is back.
	gate.Hang(t)
	c5 := repo.CommitFiles(t, "main", "shop 1.2.1", map[string]string{stagingFile: worker(imgs.V1, "serve", prod)})
	deadline := time.Now().Add(2 * time.Minute)
	for deployed(t, bin, cfg, staging, c5).IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("a deploy waited for the hung forge")
		}
		time.Sleep(200 * time.Millisecond)
	}
	gate.Up(t)
	waitStatus(c5, staging, "success")
}

// deployed is when env's deploy of commit went live (zero: not yet), from
// berth history.
func deployed(t *testing.T, bin, cfg, env, commit string) time.Time {
	t.Helper()
	var hist []struct {
		Env      string    `json:"env"`
		Commit   string    `json:"commit"`
		Result   string    `json:"result"`
		Finished time.Time `json:"finished"`
	}
	out, err := exec.Command(bin, "history", "--config", cfg, "--json").Output()
	if err != nil || json.Unmarshal(out, &hist) != nil {
		t.Fatalf("berth history: %v\n%s", err, out)
	}
	for _, h := range hist {
		if h.Env == env && h.Commit == commit && h.Result == "succeeded" {
			return h.Finished
		}
	}
	return time.Time{}
}
