package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/testenv"
)

// dockerJobs loads an environment with the given x-berth.jobs block around
// a service running the test image, and a scheduler on the real engine.
func dockerJobs(t *testing.T, jobsYAML string) (*Scheduler, *envs.Env, *testenv.DockerEnv) {
	t.Helper()
	d := testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	img := testenv.PushApp(t, reg, testenv.ImageSpec{Version: "jobs-" + d.RunID})
	d.CleanupImage(img.Ref())
	name := "j" + d.RunID
	d.CleanupLabel(t, engine.LabelJobEnv, name)
	d.CleanupLabel(t, "com.docker.compose.project", name)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "envs", name), 0o755)
	compose := fmt.Sprintf(`
services:
  web:
    image: %s
    environment: {APP_MODE: exit, APP_MARKER: from-web}
    x-berth: {role: worker}
x-berth:
  jobs:
%s`, img.Ref(), jobsYAML)
	if err := os.WriteFile(filepath.Join(dir, "envs", name, "compose.yaml"), []byte(compose), 0o644); err != nil {
		t.Fatal(err)
	}
	env, err := envs.Load(t.Context(), dir, name, envs.Options{Policy: envs.Policy{MinJobInterval: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	eng := engine.New(d.Client, nil)
	s := &Scheduler{Env: name, Store: &Store{Dir: t.TempDir()}, Runner: eng, Reaper: eng, StopGrace: time.Second}
	return s, env, d
}

// patience bounds a wait for runs the scheduler makes by itself: each
// creates, starts and waits out a container, which a loaded engine (the
// whole suite on 2 cores) has taken over 30 s to do. A bound on failure,
// never a measure.
const patience = 3 * time.Minute

func waitRuns(t *testing.T, s *Scheduler, job string, ok func([]Run) bool) []Run {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		rs, err := s.Store.Runs(job)
		if err != nil {
			t.Fatal(err)
		}
		if ok(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: timed out; newest runs: %+v", job, rs[:min(3, len(rs))])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countStatus(rs []Run, st Status) int {
	n := 0
	for _, r := range rs {
		if r.Status == st {
			n++
		}
	}
	return n
}

func TestDocker_JobsRunOnScheduleWithPoliciesAndKeepOutput(t *testing.T) {
	s, env, d := dockerJobs(t, `
    tick:
      schedule: "@every 2s"
      service: web
      environment: {APP_EXIT_CODE: "3", APP_MARKER: tick-ran}
    slow:
      schedule: "@daily"
      service: web
      environment: {APP_SLEEP: 1m}
      timeout: 1s
    overlap:
      schedule: "@every 1s"
      service: web
      environment: {APP_SLEEP: 2500ms}
    newest:
      schedule: "@every 2s"
      service: web
      environment: {APP_MODE: idle}
      concurrency: replace
`)
	if err := s.Update(env, "rev1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	if _, err := s.RunNow("slow", ""); err != nil {
		t.Fatal(err)
	}

	rs := waitRuns(t, s, "tick", func(rs []Run) bool { return countStatus(rs, StatusFailed) >= 2 })
	for _, r := range rs {
		if r.Status != StatusFailed {
			continue
		}
		if r.ExitCode == nil || *r.ExitCode != 3 || r.Image != env.Service("web").Config.Image || r.DurationMS <= 0 {
			t.Errorf("tick run %+v", r)
		}
		out, _, _ := s.Store.Output("tick", r.ID)
		if !strings.Contains(string(out), "tick-ran") || !strings.Contains(string(out), "testapp exit code=3") {
			t.Errorf("tick output %q", out)
		}
	}
	slow := waitRuns(t, s, "slow", func(rs []Run) bool { return len(rs) == 1 && rs[0].Done() })[0]
	if slow.Status != StatusTimeout || slow.ExitCode != nil {
		t.Errorf("slow run %+v", slow)
	}
	waitRuns(t, s, "overlap", func(rs []Run) bool {
		return countStatus(rs, StatusSkipped) >= 1 && countStatus(rs, StatusSucceeded) >= 1
	})
	nr := waitRuns(t, s, "newest", func(rs []Run) bool { return countStatus(rs, StatusInterrupted) >= 1 })
	for _, r := range nr {
		if r.Status == StatusInterrupted && !strings.Contains(r.Reason, "replaced") {
			t.Errorf("newest run %+v", r)
		}
	}

	// Stopping the scheduler interrupts what runs and leaves no container.
	cancel()
	<-done
	for _, job := range []string{"tick", "slow", "overlap", "newest"} {
		rs, _ := s.Store.Runs(job)
		for _, r := range rs {
			if !r.Done() {
				t.Errorf("%s run %s still %s after stop", job, r.ID, r.Status)
			}
		}
	}
	left, err := engine.New(d.Client, nil).ListJobRuns(context.Background(), s.Env)
	if err != nil || len(left) != 0 {
		t.Errorf("job containers left after stop: %+v %v", left, err)
	}
}
