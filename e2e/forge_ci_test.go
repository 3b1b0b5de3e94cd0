package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"

	"berth.dev/berth/internal/testenv"
)

// TestE2E_GiteaCIStepPostsOneComment runs the Gitea/Forgejo Actions
// workflow of docs/forge.md, its steps as written there (bash -e, as a
// runner does), against a real Gitea and the berth binary: the plan is
// posted as one comment of the bot and updated on the next push, a
// person's comment that starts with the marker is left alone and does not
// fail the job, and the plan's exit code gates the job.
func TestE2E_GiteaCIStepPostsOneComment(t *testing.T) {
	testenv.Parallel(t)
	g := testenv.StartGitea(t)
	bin := testenv.BerthBinary(t)
	steps := docWorkflow(t, "**Gitea / Forgejo Actions**")
	repo := g.CreateRepo(t, "config")
	botToken := g.NewUser(t, "planbot", "write:issue", "read:user")

	const web = "services:\n  web:\n    image: registry.example.org/shop@sha256:%s\n    x-berth: {role: worker}\n"
	repo.CommitFiles(t, "main", "shop 1.0", map[string]string{"envs/prod/compose.yaml": fmt.Sprintf(web, strings.Repeat("a", 64))})
	if code := g.API(t, http.MethodPost, "/repos/"+repo.Name+"/branches", map[string]string{"new_branch_name": "feature", "old_branch_name": "main"}, nil); code != http.StatusCreated {
		t.Fatalf("branch: %d", code)
	}
	repo.CommitFiles(t, "feature", "shop 1.1 @admins <b>", map[string]string{"envs/prod/compose.yaml": fmt.Sprintf(web, strings.Repeat("b", 64))})
	var pr struct {
		Number int `json:"number"`
	}
	if code := g.API(t, http.MethodPost, "/repos/"+repo.Name+"/pulls", map[string]string{"head": "feature", "base": "main", "title": "shop 1.1"}, &pr); code != http.StatusCreated {
		t.Fatalf("PR: %d", code)
	}
	// A person (the admin) writes the marker first.
	const theirs = "<!-- berth-plan -->\nnot berth's: leave this alone"
	g.API(t, http.MethodPost, fmt.Sprintf("/repos/%s/issues/%d/comments", repo.Name, pr.Number), map[string]string{"body": theirs}, nil)

	binDir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(binDir, "berth")); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "checkout")
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = testenv.GitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	exprs := map[string]string{
		"github.base_ref": "main", "github.server_url": g.URL, "github.repository": repo.Name,
		"github.event.pull_request.number": fmt.Sprint(pr.Number), "secrets.BERTH_PLAN_TOKEN": botToken,
	}
	// job runs the workflow's steps on a fresh checkout of the PR's head
	// and says whether the job passed.
	job := func() bool {
		t.Helper()
		os.RemoveAll(work)
		git("clone", "-q", repo.CloneURL(), work)
		git("-C", work, "checkout", "-q", "feature")
		outputs := filepath.Join(t.TempDir(), "outputs")
		os.WriteFile(outputs, nil, 0o600)
		ids := map[string]map[string]string{}
		for _, st := range steps {
			if st.Uses != "" || strings.Contains(st.Run, "/usr/local/bin/berth") {
				continue // the checkout and the download: done above
			}
			if cond, ok := strings.CutPrefix(st.If, "steps.plan.outputs.code != "); ok {
				if ids["plan"]["code"] == strings.Trim(cond, "'") {
					continue
				}
			}
			env := append(testenv.GitEnv(), "PATH="+binDir+":"+os.Getenv("PATH"), "GITHUB_OUTPUT="+outputs)
			for k, v := range st.Env {
				env = append(env, k+"="+expand(t, v, exprs))
			}
			cmd := exec.Command("bash", "-e", "-c", expand(t, st.Run, exprs))
			cmd.Dir, cmd.Env = work, env
			out, err := cmd.CombinedOutput()
			t.Logf("step %q: %v\n%s", st.ID, err, out)
			if err != nil {
				return false
			}
			if st.ID != "" {
				b, _ := os.ReadFile(outputs)
				ids[st.ID] = map[string]string{}
				for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
					if k, v, ok := strings.Cut(l, "="); ok {
						ids[st.ID][k] = v
					}
				}
			}
		}
		return true
	}
	type comment struct {
		Body string `json:"body"`
		User struct {
			Login string `json:"login"`
		} `json:"user"`
	}
	comments := func() (bots []comment, others []comment) {
		var cs []comment
		g.API(t, http.MethodGet, fmt.Sprintf("/repos/%s/issues/%d/comments", repo.Name, pr.Number), nil, &cs)
		for _, c := range cs {
			if c.User.Login == "planbot" {
				bots = append(bots, c)
			} else {
				others = append(others, c)
			}
		}
		return bots, others
	}

	if !job() {
		b, _ := os.ReadFile(filepath.Join(work, "plan.md"))
		t.Fatalf("the job failed on a valid change; plan.md:\n%s", b)
	}
	bots, others := comments()
	if len(bots) != 1 || !strings.HasPrefix(bots[0].Body, "<!-- berth-plan -->") || !strings.Contains(bots[0].Body, "**replace** `web`") {
		t.Fatalf("the bot's comments: %+v", bots)
	}
	if len(others) != 1 || others[0].Body != theirs {
		t.Errorf("the person's comment: %+v", others)
	}

	// The next push breaks the env: the same comment updated, the job fails.
	repo.CommitFiles(t, "feature", "shop 1.2", map[string]string{"envs/prod/compose.yaml": "services: [not, a, map]\n"})
	if job() {
		t.Error("the job passed on an env that fails validation")
	}
	bots, others = comments()
	if len(bots) != 1 || !strings.Contains(bots[0].Body, "**Refused**") {
		t.Errorf("after the second push, the bot's comments: %+v", bots)
	}
	if len(others) != 1 || others[0].Body != theirs {
		t.Errorf("the person's comment after the second push: %+v", others)
	}
}

type workflowStep struct {
	ID   string            `yaml:"id"`
	If   string            `yaml:"if"`
	Run  string            `yaml:"run"`
	Uses string            `yaml:"uses"`
	Env  map[string]string `yaml:"env"`
}

// docWorkflow reads the steps of the workflow that follows heading in
// docs/forge.md.
func docWorkflow(t *testing.T, heading string) []workflowStep {
	t.Helper()
	b, err := os.ReadFile("../docs/forge.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), heading)
	if !ok {
		t.Fatalf("docs/forge.md has no %s", heading)
	}
	_, rest, _ = strings.Cut(rest, "```yaml\n")
	block, _, _ := strings.Cut(rest, "```")
	var wf struct {
		Jobs map[string]struct {
			Steps []workflowStep `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(block), &wf); err != nil {
		t.Fatalf("the workflow in docs/forge.md: %v", err)
	}
	for _, j := range wf.Jobs {
		return j.Steps
	}
	t.Fatal("the workflow in docs/forge.md has no job")
	return nil
}

var exprRe = regexp.MustCompile(`\$\{\{\s*([^}]+?)\s*\}\}`)

// expand replaces ${{ expr }} as a runner does, from exprs; an
// expression the test does not know fails it.
func expand(t *testing.T, s string, exprs map[string]string) string {
	t.Helper()
	return exprRe.ReplaceAllStringFunc(s, func(m string) string {
		k := exprRe.FindStringSubmatch(m)[1]
		v, ok := exprs[k]
		if !ok {
			t.Fatalf("the workflow uses ${{ %s }}, which the test does not provide", k)
		}
		return v
	})
}
