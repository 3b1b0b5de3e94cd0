package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"berth.dev/berth/envs"
)

const examples = "../../examples/config-repo"

func TestValidate_ExamplesAreClean(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"validate", examples}, &stdout, &stderr)
	want := "envs/ci: ok (1 service, 0 jobs)\nenvs/demo: ok (4 services, 1 job)\nenvs/end2end: ok (3 services, 0 jobs)\nenvs/prod: ok (4 services, 1 job)\nenvs/shop: ok (4 services, 0 jobs)\n"
	if code != exitOK || stdout.String() != want {
		t.Fatalf("exit %d, stdout:\n%s\nstderr: %s\nwant:\n%s", code, stdout.String(), stderr.String(), want)
	}
}

func TestValidate_ProblemsExitOneAndJSON(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "envs/prod"), 0o755)
	os.WriteFile(filepath.Join(dir, "envs/prod/compose.yaml"), []byte("services:\n  w: {image: 'r/a:1'}\n"), 0o644)

	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"validate", "--env", "prod", dir}, &stdout, &stderr)
	if code != exitFailure || !strings.HasPrefix(stdout.String(), "envs/prod/compose.yaml:w:image: ") {
		t.Fatalf("exit %d, stdout %q", code, stdout.String())
	}

	stdout.Reset()
	code = run(context.Background(), []string{"validate", "--format", "json", dir}, &stdout, &stderr)
	var results []envs.Validation
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		t.Fatalf("json: %v\n%s", err, stdout.String())
	}
	if code != exitFailure || len(results) != 1 || results[0].OK || results[0].Problems[0].Field != "image" {
		t.Fatalf("exit %d, results %+v", code, results)
	}
}

func TestValidate_UsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"validate", "--format", "xml"}, {"validate", "--nope"}, {"validate", "a", "b"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestPromote_ExamplesEndToEndIntoProd(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(examples)); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"promote", "--from", "end2end", "--to", "prod", dir}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "+JOURNAL_DIGEST=sha256:9a8b7c6d5e4f") {
		t.Errorf("diff lacks the new digest:\n%s", stdout.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "envs/prod/.env"))
	if !strings.HasPrefix(string(b), "# The release running in production.\n") || !strings.Contains(string(b), "sha256:9a8b7c6d5e4f") {
		t.Errorf(".env after promote:\n%s", b)
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"promote", "--from", "end2end", "--to", "prod", dir}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "nothing to promote") {
		t.Errorf("second promote: exit %d, %q", code, stdout.String())
	}
}

func TestValidate_PolicyFromAnAgentConfig(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "envs/prod"), 0o755)
	os.WriteFile(filepath.Join(dir, "envs/prod/compose.yaml"), []byte("services:\n  w:\n    image: r/a@sha256:"+strings.Repeat("1", 64)+"\n    volumes: ['/srv/data:/data']\n    x-berth: {secrets: {DB: 'database/creds/app#password'}}\n"), 0o644)
	agent := filepath.Join(t.TempDir(), "agent.yaml")
	write := func(s string) { os.WriteFile(agent, []byte(s), 0o644) }

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"validate", dir}, &stdout, &stderr); code != exitFailure || !strings.Contains(stdout.String(), "bind mount of /srv/data is outside the allowed host paths") {
		t.Fatalf("without a policy: exit %d, %s", code, stdout.String())
	}
	write("env: prod\nrepo: {url: https://git.example/config}\npolicy:\n  allowed_bind_mounts: [/srv/data]\nvault: {address: https://vault.example, token_file: /nonexistent, allowed_paths: [kv/app]}\n")
	stdout.Reset()
	if code := run(context.Background(), []string{"validate", "--policy", agent, dir}, &stdout, &stderr); code != exitFailure ||
		strings.Contains(stdout.String(), "/srv/data") || !strings.Contains(stdout.String(), "Vault path database/creds/app is outside vault.allowed_paths") {
		t.Fatalf("with the host's policy: exit %d, %s", code, stdout.String())
	}
	write("policy:\n  allowed_bind_mounts: [/srv/data]\nvault: {allowed_paths: [kv/app, database/creds/app]}\n")
	stdout.Reset()
	if code := run(context.Background(), []string{"validate", "--policy", agent, dir}, &stdout, &stderr); code != exitOK {
		t.Fatalf("policy allowing both: exit %d, %s", code, stdout.String())
	}
	write("policy:\n  allowed_bind_mount: [/srv/data]\n")
	stderr.Reset()
	if code := run(context.Background(), []string{"validate", "--policy", agent, dir}, &stdout, &stderr); code != exitConfig || !strings.Contains(stderr.String(), "allowed_bind_mount") {
		t.Fatalf("a typo in the policy: exit %d, %s", code, stderr.String())
	}
}
