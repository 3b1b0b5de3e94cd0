package migrate

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

// fakeEngine records the runs asked of it and answers from a script.
type fakeEngine struct {
	ran     []string
	results map[string]*engine.RunResult
	err     error
}

func (f *fakeEngine) RunOnce(_ context.Context, req *engine.Request, _ time.Duration) (*engine.RunResult, error) {
	f.ran = append(f.ran, req.Name)
	if f.err != nil {
		return nil, f.err
	}
	if r, ok := f.results[req.Name]; ok {
		return r, nil
	}
	return &engine.RunResult{}, nil
}

func job(name string, role envs.Role, image string) Job {
	s := envs.Service{Name: name, Berth: envs.ServiceSpec{Role: role}}
	s.Config.Image = image
	s.Config.Command = []string{"run", name}
	return Job{Service: s, Request: &engine.Request{Name: name}}
}

func TestRunner_MigrationsFirstThenCLI_OnceEach(t *testing.T) {
	ledger := filepath.Join(t.TempDir(), "migrations.json")
	f := &fakeEngine{}
	r := &Runner{Engine: f, Ledger: ledger}
	jobs := []Job{job("smoke", envs.RoleCLI, "r@1"), job("migrate", envs.RoleMigrate, "r@1"), job("web", envs.RoleServer, "r@1")}
	if _, err := r.Run(t.Context(), jobs); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.ran, ","); got != "migrate,smoke" {
		t.Fatalf("ran %s, want migrate,smoke", got)
	}
	f.ran = nil
	recs, err := r.Run(t.Context(), jobs)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(f.ran, ","); got != "smoke" {
		t.Fatalf("redeploy ran %s, want only smoke (the migration succeeded before)", got)
	}
	if recs[0].Skipped == "" {
		t.Fatalf("records %+v: the skipped migration is not recorded as such", recs)
	}
	f.ran = nil
	if _, err := r.Run(t.Context(), []Job{job("migrate", envs.RoleMigrate, "r@2")}); err != nil || len(f.ran) != 1 {
		t.Fatalf("a new image's migration did not run: %v %v", f.ran, err)
	}
}

func TestRunner_StopsAtTheFirstFailureAndRedacts(t *testing.T) {
	f := &fakeEngine{results: map[string]*engine.RunResult{
		"migrate": {ExitCode: 1, Output: []byte("connecting with password hunter2-secret\nfailed\n")},
	}}
	r := &Runner{Engine: f, Ledger: filepath.Join(t.TempDir(), "m.json")}
	j := job("migrate", envs.RoleMigrate, "r@1")
	j.Secrets = []string{"hunter2-secret"}
	recs, err := r.Run(t.Context(), []Job{j, job("smoke", envs.RoleCLI, "r@1")})
	if err == nil || err.Error() != "migrate migrate: exited with code 1" {
		t.Fatalf("err %v", err)
	}
	if len(f.ran) != 1 {
		t.Fatalf("ran %v after a failed migration", f.ran)
	}
	if strings.Contains(recs[0].Output, "hunter2") || !strings.Contains(recs[0].Output, "[redacted]") {
		t.Fatalf("output kept: %q", recs[0].Output)
	}
	f.results["migrate"] = &engine.RunResult{TimedOut: true, ExitCode: -1}
	if _, err := r.Run(t.Context(), []Job{j}); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout: %v", err)
	}
	f.err = errors.New("engine down")
	if _, err := r.Run(t.Context(), []Job{j}); err == nil || !strings.Contains(err.Error(), "engine down") {
		t.Fatalf("engine error: %v", err)
	}
}
