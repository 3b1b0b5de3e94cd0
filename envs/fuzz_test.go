package envs

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"
)

// FuzzLoad feeds arbitrary Compose files to Load: it may report problems,
// never panic or hang. Seeds: testdata/fuzz/FuzzLoad and the cases below.
func FuzzLoad(f *testing.F) {
	f.Add(fullCompose, "DIGEST="+d1+"\n")
	f.Add("services:\n  w:\n    image: r@"+d1+"\n    x-berth: {role: server, port: 99999}\n", "")
	f.Add("include: [a.yaml, {path: [b.yaml], env_file: c.env}]\nservices: {}\n", "")
	f.Add("services:\n  w: {extends: w}\n", "")
	f.Add("x-berth: {jobs: {j: {schedule: '@every 1s', command: \"a 'b\"}}}\n", "")
	f.Fuzz(func(t *testing.T, compose, dotenv string) {
		dir := t.TempDir()
		envDir := filepath.Join(dir, "envs", "prod")
		if err := os.MkdirAll(envDir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(envDir, "compose.yaml"), []byte(compose), 0o644)
		os.WriteFile(filepath.Join(envDir, ".env"), []byte(dotenv), 0o644)
		done := make(chan struct{})
		go func() {
			defer close(done)
			env, err := Load(t.Context(), dir, "prod", Options{MaxFileSize: 64 << 10})
			if err == nil && env == nil {
				t.Error("no env and no error")
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Load still running after 5s on compose %q", compose)
		}
	})
}

// FuzzXBerth feeds arbitrary YAML as the x-berth blocks of a service and of
// the top level.
func FuzzXBerth(f *testing.F) {
	f.Add("{role: server, port: 8080, secrets: {DB: kv/a#b@2}, stop_first: true}")
	f.Add("{lb: {type: nginx, upstream: u, file: /etc/nginx/conf.d/u.conf}, jobs: {j: {schedule: '0 3 * * *', timezone: UTC, service: w, timeout: 30m, history: 5, jitter: 1s}}}")
	f.Add("[1, 2]")
	f.Add("{secrets: {'1BAD': 'a#b'}, port: '80'}")
	f.Fuzz(func(t *testing.T, src string) {
		var v any
		if yaml.Unmarshal([]byte(src), &v) != nil {
			return
		}
		report := func(field, msg, hint string) {}
		parseServiceSpec(v, report)
		parseTopSpec(v, "fuzz", report)
	})
}

func FuzzParseSecretRef(f *testing.F) {
	for _, s := range []string{"kv/journal/db#password", "kv/a#b@3", "#", "a#b@", "../x#y", "a#b@-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := ParseSecretRef(s)
		if err != nil {
			return
		}
		again, err := ParseSecretRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("%q parsed to %+v, which does not round-trip (%+v, %v)", s, ref, again, err)
		}
	})
}
