package envs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

// writeTree writes files (path → content) under a new temp dir and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func load(t *testing.T, files map[string]string, opts Options) (*Env, Problems) {
	t.Helper()
	env, err := Load(context.Background(), writeTree(t, files), "prod", opts)
	var ps Problems
	if err != nil && !errors.As(err, &ps) {
		t.Fatalf("Load: %v", err)
	}
	return env, ps
}

const fullCompose = `
include:
  - shared/redis.yaml
services:
  migrate:
    image: reg.example/journal@${DIGEST}
    command: ["bin/console", "migrate"]
    x-berth: {role: migrate}
  smoke:
    extends: {file: shared/base.yaml, service: app}
    command: ["bin/console", "check"]
    x-berth: {role: cli}
  worker:
    extends: {file: shared/base.yaml, service: app}
  web:
    image: reg.example/journal@${DIGEST}
    environment:
      LOG_LEVEL: ${LOG_LEVEL:-info}
    x-berth:
      role: server
      port: 8080
      secrets:
        DB_PASSWORD: kv/journal/db#password
        API_KEY: kv/journal/api#key@3
x-berth:
  lb: {type: nginx, upstream: journal, file: /etc/nginx/conf.d/berth-journal.conf}
  jobs:
    nightly-cleanup:
      schedule: "0 3 * * *"
      timezone: Europe/London
      service: web
      command: ["bin/console", "cleanup"]
      timeout: 30m
      concurrency: replace
`

func fullFiles() map[string]string {
	return map[string]string{
		"envs/prod/compose.yaml": fullCompose,
		"envs/prod/compose.override.yaml": `
services:
  web:
    environment:
      FROM_OVERRIDE: "yes"
`,
		"envs/prod/.env":              "DIGEST=" + d1 + "\nLOG_LEVEL=debug\n",
		"envs/prod/shared/base.yaml":  "services:\n  app:\n    image: reg.example/journal@" + d1 + "\n    environment: {BASE: 'true'}\n",
		"envs/prod/shared/redis.yaml": "services:\n  redis:\n    image: reg.example/redis@" + d2 + "\n",
	}
}

func TestLoad_FullEnvironmentAsComposeWouldLoadIt(t *testing.T) {
	env, ps := load(t, fullFiles(), Options{})
	if len(ps) > 0 {
		t.Fatalf("problems:\n%v", ps)
	}
	var order []string
	for _, s := range env.Services {
		order = append(order, s.Name+":"+string(s.Berth.Role))
	}
	if got, want := strings.Join(order, " "), "migrate:migrate smoke:cli redis:worker worker:worker web:server"; got != want {
		t.Errorf("services by phase = %q, want %q", got, want)
	}
	web := env.Service("web")
	if web.Config.Image != "reg.example/journal@"+d1 {
		t.Errorf(".env interpolation: image %q", web.Config.Image)
	}
	if v := web.Config.Environment["LOG_LEVEL"]; v == nil || *v != "debug" {
		t.Errorf("LOG_LEVEL = %v, want debug from .env", v)
	}
	if v := web.Config.Environment["FROM_OVERRIDE"]; v == nil || *v != "yes" {
		t.Errorf("compose.override.yaml not applied: %v", web.Config.Environment)
	}
	if web.Berth.Port != 8080 || web.Berth.Secrets["API_KEY"] != (SecretRef{Path: "kv/journal/api", Field: "key", Version: 3}) {
		t.Errorf("x-berth of web = %+v", web.Berth)
	}
	if v := env.Service("worker").Config.Environment["BASE"]; v == nil || *v != "true" {
		t.Errorf("extends not applied to worker: %v", env.Service("worker").Config.Environment)
	}
	if env.LB == nil || env.LB.Upstream != "journal" {
		t.Errorf("lb = %+v", env.LB)
	}
	job := env.Jobs["nightly-cleanup"]
	if job.Timezone != "Europe/London" || job.Concurrency != ConcurrencyReplace || job.History != 50 || job.Missed != "skip" || job.Timeout.Minutes() != 30 {
		t.Errorf("job = %+v", job)
	}
	if env.Project.Name != "prod" || !env.RequireDigests {
		t.Errorf("project %q, require_digests %v", env.Project.Name, env.RequireDigests)
	}
}

func TestLoad_InterpolationIgnoresTheAgentsEnvironment(t *testing.T) {
	t.Setenv("LOG_LEVEL", "from-host")
	env, ps := load(t, fullFiles(), Options{})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if v := env.Service("web").Config.Environment["LOG_LEVEL"]; *v != "debug" {
		t.Fatalf("LOG_LEVEL = %q: the host environment leaked into the revision", *v)
	}
}

func TestLoad_ProfilesIgnoredUnlessNamed(t *testing.T) {
	files := map[string]string{"envs/prod/compose.yaml": `
services:
  app: {image: "r/a@` + d1 + `"}
  debug: {image: "r/d@` + d1 + `", profiles: [debug]}
`}
	env, ps := load(t, files, Options{})
	if len(ps) > 0 || env.Service("debug") != nil {
		t.Fatalf("debug service loaded without its profile (problems %v)", ps)
	}
	env, ps = load(t, files, Options{Profiles: []string{"debug"}})
	if len(ps) > 0 || env.Service("debug") == nil {
		t.Fatalf("debug service missing with its profile named (problems %v)", ps)
	}
}

func TestConfigHash_ChangesExactlyWithTheContainer(t *testing.T) {
	base := fullFiles()
	hashes := func(files map[string]string) map[string]string {
		t.Helper()
		env, ps := load(t, files, Options{})
		if len(ps) > 0 {
			t.Fatal(ps)
		}
		out := map[string]string{}
		for _, s := range env.Services {
			out[s.Name] = s.Hash
		}
		return out
	}
	before := hashes(base)
	if again := hashes(base); again["web"] != before["web"] {
		t.Fatal("hash of an unchanged service differs between loads")
	}
	tests := []struct {
		name    string
		edit    func(map[string]string)
		changed []string
	}{
		{"image digest", func(f map[string]string) { f["envs/prod/.env"] = "DIGEST=" + d2 + "\nLOG_LEVEL=debug\n" }, []string{"migrate", "web"}},
		{"env value", func(f map[string]string) { f["envs/prod/.env"] = "DIGEST=" + d1 + "\nLOG_LEVEL=warn\n" }, []string{"web"}},
		{"secret reference", func(f map[string]string) {
			f["envs/prod/compose.yaml"] = strings.Replace(fullCompose, "api#key@3", "api#key@4", 1)
		}, []string{"web"}},
		{"extended base", func(f map[string]string) {
			f["envs/prod/shared/base.yaml"] = strings.Replace(f["envs/prod/shared/base.yaml"], "'true'", "'false'", 1)
		}, []string{"smoke", "worker"}},
		{"a job only", func(f map[string]string) {
			f["envs/prod/compose.yaml"] = strings.Replace(fullCompose, "0 3 * * *", "0 4 * * *", 1)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := fullFiles()
			tc.edit(files)
			after := hashes(files)
			for name, h := range after {
				changed := h != before[name]
				want := strings.Contains(" "+strings.Join(tc.changed, " ")+" ", " "+name+" ")
				if changed != want {
					t.Errorf("%s: hash changed = %v, want %v", name, changed, want)
				}
			}
		})
	}
}

func TestConfigHash_CoversFilesMountedFromTheRepo(t *testing.T) {
	files := map[string]string{
		"envs/prod/compose.yaml": "services:\n  app:\n    image: r/a@" + d1 + "\n    volumes: [./conf/app.ini:/etc/app.ini:ro]\n",
		"envs/prod/conf/app.ini": "a=1\n",
	}
	env1, ps := load(t, files, Options{})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	files["envs/prod/conf/app.ini"] = "a=2\n"
	env2, ps := load(t, files, Options{})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	if env1.Services[0].Hash == env2.Services[0].Hash {
		t.Fatal("editing a file mounted from the repo left the hash unchanged")
	}
}
