package preview

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"berth.dev/berth/internal/testenv"
)

// repo is a developer's checkout of the config repo.
type repo struct {
	t *testing.T
	*testenv.LocalRepo
}

func newRepo(t *testing.T) *repo { return &repo{t, testenv.NewLocalRepo(t)} }

func (r *repo) commit(msg string, files map[string]string) string { return r.Commit(r.t, msg, files) }

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

const prodCompose = `services:
  migrate:
    image: registry.example.org/shop@${DIGEST}
    command: ["shop", "migrate"]
    x-berth: {role: migrate}
  smoke:
    image: registry.example.org/shop@${DIGEST}
    command: ["shop", "check"]
    x-berth: {role: cli}
  worker:
    image: registry.example.org/shop@${DIGEST}
    command: ["shop", "worker"]
    environment: {QUEUE: default}
    x-berth: {role: worker, secrets: {DB_PASSWORD: kv/shop/db#password}}
  web:
    image: registry.example.org/shop@${DIGEST}
    environment: {LOG_LEVEL: info}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: shop}
  rollout: {canary: 1, max_parallel: "25%", pause: 5m}
  jobs:
    cleanup:
      schedule: "0 3 * * *"
      service: web
      command: ["shop", "cleanup"]
`

const devCompose = `services:
  app:
    image: registry.example.org/dev@` + digestA + `
    x-berth: {role: worker}
`

func baseRepo(t *testing.T) (*repo, string) {
	r := newRepo(t)
	base := r.commit("base", map[string]string{
		"envs/prod/compose.yaml": prodCompose,
		"envs/prod/.env":         "DIGEST=" + digestA + "\n",
		"envs/dev/compose.yaml":  devCompose,
	})
	return r, base
}

func compute(t *testing.T, r *repo, from, to string, o Options) *Report {
	t.Helper()
	rep, err := Compute(context.Background(), r.Dir, from, to, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func service(e EnvReport, name string) *ServiceChange {
	for i := range e.Services {
		if e.Services[i].Service == name {
			return &e.Services[i]
		}
	}
	return nil
}

func TestCompute_DigestBumpReplacesServicesAndRunsTheMigration(t *testing.T) {
	r, base := baseRepo(t)
	head := r.commit("shop 1.5", map[string]string{"envs/prod/.env": "DIGEST=" + digestB + "\n"})
	rep := compute(t, r, base, head, Options{Hosts: 10})
	if len(rep.Envs) != 1 || rep.Envs[0].Env != "prod" || !slices.Equal(rep.Unchanged, []string{"dev"}) {
		t.Fatalf("envs %+v, unchanged %v", rep.Envs, rep.Unchanged)
	}
	e := rep.Envs[0]
	if !slices.Equal(e.Files, []string{"envs/prod/.env"}) {
		t.Errorf("files %v", e.Files)
	}
	for _, name := range []string{"web", "worker"} {
		s := service(e, name)
		if s == nil || s.Action != "replace" || len(s.Reasons) != 1 || s.Reasons[0] != "image sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…" {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if len(e.Migrations) != 1 || !e.Migrations[0].Runs || !strings.HasPrefix(e.Migrations[0].Reason, "new image") {
		t.Errorf("migrations %+v", e.Migrations)
	}
	if len(e.CLI) != 1 || !e.CLI[0].Runs {
		t.Errorf("cli %+v", e.CLI)
	}
	if len(e.Jobs) != 1 || e.Jobs[0].Job != "cleanup" || !slices.Contains(e.Jobs[0].Changes, "runs service web's new image or config") {
		t.Errorf("jobs %+v", e.Jobs)
	}
	if e.Rollout == nil || !slices.Equal(e.Rollout.Waves, []int{1, 2, 2, 2, 2, 1}) {
		t.Errorf("rollout %+v", e.Rollout)
	}
	if rep.Failed() {
		t.Error("a valid change must not fail")
	}
}

func TestCompute_ConfigSecretReferencesAndJobsExplained(t *testing.T) {
	r, _ := baseRepo(t)
	withGone := strings.Replace(prodCompose, "x-berth: {role: cli}", "x-berth: {role: cli}\n  gone:\n    image: registry.example.org/x@"+digestA+"\n    x-berth: {role: worker}", 1)
	mid := r.commit("add gone", map[string]string{"envs/prod/compose.yaml": withGone})
	changed := strings.NewReplacer(
		"environment: {LOG_LEVEL: info}", "environment: {LOG_LEVEL: debug, TRACE: \"1\"}",
		"kv/shop/db#password", "kv/shop/db2#password",
		`schedule: "0 3 * * *"`, `schedule: "0 4 * * *"`,
		"  jobs:\n", "  jobs:\n    report:\n      schedule: \"@hourly\"\n      image: registry.example.org/r@"+digestA+"\n",
	).Replace(prodCompose)
	head := r.commit("tune", map[string]string{"envs/prod/compose.yaml": changed})
	e := compute(t, r, mid, head, Options{}).Envs[0]
	if s := service(e, "web"); s == nil || !slices.Equal(s.Reasons, []string{"environment: LOG_LEVEL changed; TRACE added"}) {
		t.Errorf("web: %+v", s)
	}
	if s := service(e, "worker"); s == nil || !slices.Equal(s.Reasons, []string{"secret reference DB_PASSWORD: kv/shop/db#password → kv/shop/db2#password"}) {
		t.Errorf("worker: %+v", s)
	}
	if s := service(e, "gone"); s == nil || s.Action != "remove" {
		t.Errorf("gone: %+v", s)
	}
	if len(e.Migrations) != 1 || e.Migrations[0].Runs {
		t.Errorf("the migration ran for this image and command already: %+v", e.Migrations)
	}
	var actions []string
	for _, j := range e.Jobs {
		actions = append(actions, j.Job+" "+j.Action+" "+strings.Join(j.Changes, ";"))
	}
	if !slices.Equal(actions, []string{"cleanup changed schedule 0 3 * * * → 0 4 * * *;runs service web's new image or config", "report added "}) {
		t.Errorf("jobs %q", actions)
	}
	for _, n := range e.Notes {
		if strings.Contains(n, "secret values") {
			return
		}
	}
	t.Errorf("the plan must say it cannot see secret values: %v", e.Notes)
}

func TestCompute_PolicyVerdictFailsAndNewEnvCreates(t *testing.T) {
	r, base := baseRepo(t)
	head := r.commit("bad", map[string]string{
		"envs/dev/compose.yaml": strings.Replace(devCompose, "x-berth: {role: worker}", "privileged: true\n    x-berth: {role: worker}", 1),
		"envs/new/compose.yaml": devCompose,
	})
	rep := compute(t, r, base, head, Options{})
	if !rep.Failed() {
		t.Fatal("a policy verdict at --to must fail the plan")
	}
	byEnv := map[string]EnvReport{}
	for _, e := range rep.Envs {
		byEnv[e.Env] = e
	}
	if d := byEnv["dev"]; d.State != EnvInvalid || len(d.Problems) == 0 || !strings.Contains(d.Problems[0].String(), "privileged") {
		t.Errorf("dev: %+v", d)
	}
	if n := byEnv["new"]; n.State != EnvAdded || len(n.Services) != 1 || n.Services[0].Action != "create" {
		t.Errorf("new: %+v", n)
	}
	if _, err := Compute(context.Background(), r.Dir, base, head, Options{Envs: []string{"nope"}}); err == nil {
		t.Error("an unknown --env must be refused")
	}
	if _, err := Compute(context.Background(), r.Dir, base, "--upload-pack=evil", Options{}); err == nil {
		t.Error("a ref that looks like an option must be refused")
	}
}

func TestRender_HostileRepoStringsAreEscapedInMarkdown(t *testing.T) {
	r, base := baseRepo(t)
	subject := "`x` @security-team #1 <img src=x onerror=alert(1)> [click](http://evil) \x1b[31m"
	head := r.commit(subject, map[string]string{"envs/prod/.env": "DIGEST=" + digestB + "\n"})
	rep := compute(t, r, base, head, Options{})
	var md, txt, js bytes.Buffer
	if err := rep.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	if !strings.HasPrefix(out, Marker+"\n") {
		t.Error("the Markdown starts with the marker CI steps update by")
	}
	want := "`` `x` @security-team #1 <img src=x onerror=alert(1)> [click](http://evil) [31m ``"
	if !strings.Contains(out, want) {
		t.Errorf("the subject must be one code span:\n%s", out)
	}
	if strings.Count(out, "<img") != 1 || strings.Contains(out, "\x1b") {
		t.Errorf("hostile text outside its span:\n%s", out)
	}
	rep.Text(&txt)
	if strings.Contains(txt.String(), "\x1b") || !strings.Contains(txt.String(), "replace web (server)") {
		t.Errorf("text:\n%s", txt.String())
	}
	rep.JSON(&js)
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.To.ID != head {
		t.Errorf("json: %v", err)
	}
}

func TestCode_FenceOutlastsBackticks(t *testing.T) {
	for in, want := range map[string]string{
		"plain":     "`plain`",
		"a`b":       "``a`b``",
		"``x":       "``` ``x ```",
		"":          "(none)",
		"two\nline": "`two line`",
	} {
		if got := code(in); got != want {
			t.Errorf("code(%q) = %q, want %q", in, got, want)
		}
	}
}

// A new value in a SOPS-encrypted file replaces the services using it,
// the reason naming the secret, never a value (none is known here).
func TestCompute_SOPSValueChangeSaysSecretChanged(t *testing.T) {
	r, _ := baseRepo(t)
	sealed := func(name string) string {
		b, err := os.ReadFile("../sopsfile/testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	compose := strings.Replace(prodCompose, "secrets: {DB_PASSWORD: kv/shop/db#password}", `secrets: {DB_PASSWORD: "sops:secrets.env#DB_PASSWORD"}`, 1)
	from := r.commit("sops", map[string]string{"envs/prod/compose.yaml": compose, "envs/prod/secrets.env": sealed("shop.env")})
	to := r.commit("a new password", map[string]string{"envs/prod/secrets.env": sealed("partial.env")})
	e := compute(t, r, from, to, Options{}).Envs[0]
	if s := service(e, "worker"); s == nil || !slices.Equal(s.Reasons, []string{"secret DB_PASSWORD changed (its encrypted value in secrets.env)"}) {
		t.Errorf("worker: %+v", s)
	}
	if s := service(e, "web"); s != nil {
		t.Errorf("web uses no secret: %+v", s)
	}
}

// TestCompute_EnvsBelowAPath: a config repository whose envs/ lives below
// a directory (the agent's repo.path, a monorepo's deploy/) is planned
// with Options.Path; a path that escapes the repository is refused.
func TestCompute_EnvsBelowAPath(t *testing.T) {
	r := newRepo(t)
	worker := "services:\n  app:\n    image: registry.example.org/dev@%s\n    x-berth: {role: worker}\n"
	r.commit("one", map[string]string{"deploy/envs/dev/compose.yaml": strings.Replace(worker, "%s", digestA, 1), "README": "x"})
	r.commit("two", map[string]string{"deploy/envs/dev/compose.yaml": strings.Replace(worker, "%s", digestB, 1)})
	rep, err := Compute(context.Background(), r.Dir, "HEAD~1", "HEAD", Options{Path: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Envs) != 1 || rep.Envs[0].Env != "dev" || len(rep.Envs[0].Services) != 1 || rep.Envs[0].Services[0].Action != "replace" {
		t.Errorf("plan %+v", rep.Envs)
	}
	for _, bad := range []string{"../x", "/etc", "README"} {
		if _, err := Compute(context.Background(), r.Dir, "HEAD~1", "HEAD", Options{Path: bad}); err == nil {
			t.Errorf("path %q: want an error", bad)
		}
	}
}
