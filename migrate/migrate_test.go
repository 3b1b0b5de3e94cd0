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
	"berth.dev/berth/internal/failure"
)

// fakeEngine records the runs asked of it and answers from a script.
type fakeEngine struct {
	ran     []string
	opts    []engine.OneShot
	results map[string]*engine.RunResult
	err     error
}

func (f *fakeEngine) RunOnce(_ context.Context, req *engine.Request, o engine.OneShot) (*engine.RunResult, error) {
	f.ran = append(f.ran, req.Name)
	f.opts = append(f.opts, o)
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

func TestRunner_StopsAtTheFirstFailureWithAVerdict(t *testing.T) {
	f := &fakeEngine{results: map[string]*engine.RunResult{
		"migrate": {ExitCode: 1, Output: []byte("connecting with password [redacted]\nfailed\n"), StderrDropped: 7},
	}}
	r := &Runner{Engine: f, Ledger: filepath.Join(t.TempDir(), "m.json"), Timeout: time.Minute, Grace: 3 * time.Second}
	j := job("migrate", envs.RoleMigrate, "r@1")
	j.Secrets = []string{"hunter2-secret"}
	recs, err := r.Run(t.Context(), []Job{j, job("smoke", envs.RoleCLI, "r@1")})
	if err == nil || err.Error() != "migrate migrate: exited with code 1" || !failure.IsVerdict(err) {
		t.Fatalf("err %v (%s)", err, failure.Of(err))
	}
	if len(f.ran) != 1 {
		t.Fatalf("ran %v after a failed migration", f.ran)
	}
	// The engine's one-shot runner redacts; the runner hands it the values
	// and its limits.
	if o := f.opts[0]; len(o.Secrets) != 1 || o.Secrets[0] != "hunter2-secret" || o.Timeout != time.Minute || o.Grace != 3*time.Second {
		t.Fatalf("one-shot options %+v", o)
	}
	if recs[0].Output != "connecting with password [redacted]\nfailed\n" || recs[0].StderrDropped != 7 {
		t.Fatalf("record %+v", recs[0])
	}
	f.results["migrate"] = &engine.RunResult{TimedOut: true, ExitCode: -1}
	if _, err := r.Run(t.Context(), []Job{j}); err == nil || !strings.Contains(err.Error(), "timed out") || !failure.IsVerdict(err) {
		t.Fatalf("timeout: %v", err)
	}
	f.results["migrate"] = &engine.RunResult{Stopped: errors.New("the agent is stopping"), ExitCode: -1}
	recs, err = r.Run(t.Context(), []Job{j})
	if err == nil || failure.Of(err) != failure.Unclassed || recs[0].Interrupted != "the agent is stopping" {
		t.Fatalf("stopped: %v %+v", err, recs)
	}
	f.err = failure.AsOutage(errors.New("engine down"))
	if _, err := r.Run(t.Context(), []Job{j}); err == nil || !strings.Contains(err.Error(), "engine down") || !failure.IsOutage(err) {
		t.Fatalf("engine error: %v", err)
	}
}
