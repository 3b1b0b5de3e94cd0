package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/imagesig"
	"berth.dev/berth/internal/failure"
	"github.com/hashicorp/go-hclog"
)

func TestScheduler_RecoverMarksInterruptedAndRemovesContainers(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "long", Schedule: "@daily"}), "rev1")
	h.s.RunNow("long", "")
	h.settled(t, "long", 1, func([]Run) bool { return h.eng.running() == 1 })

	// A new agent on the same state dir and engine, the old one gone.
	h2 := &Scheduler{Env: "prod", Store: h.s.Store, Runner: h.eng, Reaper: h.eng, Now: h.clk.now}
	if err := h2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := h.runs(t, "long")[0]
	if r.Status != StatusInterrupted || h.eng.running() != 0 {
		t.Fatalf("%+v, %d containers", r, h.eng.running())
	}
	if out, _, _ := h.s.Store.Output("long", r.ID); !strings.Contains(string(out), r.ID) {
		t.Errorf("output not kept: %q", out)
	}
}

func TestStore_PruneKeepsHistoryLimit(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	for i := range 5 {
		st.Save(&Run{ID: NewID(t0.Add(time.Duration(i) * time.Second)), Job: "j", Status: StatusSucceeded})
		st.SaveOutput("j", NewID(t0), nil, nil)
	}
	st.Save(&Run{ID: NewID(t0.Add(-time.Hour)), Job: "j", Status: StatusRunning})
	if err := st.Prune("j", 2); err != nil {
		t.Fatal(err)
	}
	rs, _ := st.Runs("j")
	if len(rs) != 3 || rs[2].Status != StatusRunning {
		t.Fatalf("%+v", rs)
	}
	if err := st.Save(&Run{ID: "x", Job: "../etc"}); err == nil {
		t.Error("a job name with a path was saved")
	}
}

type jobSecrets struct{}

func (jobSecrets) Resolve(context.Context, string, map[string]envs.SecretRef) ([]string, string, error) {
	return []string{"API_TOKEN=sup3r-s3cret-token"}, "d", nil
}

func TestScheduler_RunOutputKeepsNoSecretValue(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Secrets = jobSecrets{}
	env := testEnv(envs.JobSpec{Name: "report", Schedule: "@daily"})
	env.Services[0].Berth.Secrets = map[string]envs.SecretRef{"API_TOKEN": {Path: "kv/api", Field: "token"}}
	h.s.Update(env, "rev1")
	id, _ := h.s.RunNow("report", "")
	h.settled(t, "report", 1, func([]Run) bool { return h.eng.running() == 1 })
	h.eng.exit(t, id, 0)
	r := h.settled(t, "report", 1, allDone)[0]
	_, errb, _ := h.s.Store.Output("report", r.ID)
	if strings.Contains(string(errb), "sup3r") || !strings.Contains(string(errb), "API_TOKEN=[redacted]") || !r.Secrets {
		t.Fatalf("stored stderr %q (secrets %v)", errb, r.Secrets)
	}
}

func TestScheduler_RunsGoThroughTheOneShotRunnerWithTheJobsLimits(t *testing.T) {
	h := newHarness(t, t0)
	h.s.StopGrace, h.s.MaxOutput = 3*time.Second, 4096
	h.s.Secrets = jobSecrets{}
	env := testEnv(envs.JobSpec{Name: "report", Schedule: "@daily", Timeout: time.Hour})
	env.Services[0].Berth.Secrets = map[string]envs.SecretRef{"API_TOKEN": {Path: "kv/api", Field: "token"}}
	h.s.Update(env, "rev1")
	id, _ := h.s.RunNow("report", "")
	h.settled(t, "report", 1, func([]Run) bool { return h.eng.running() == 1 })
	h.eng.exit(t, id, 0)
	h.settled(t, "report", 1, allDone)
	h.eng.mu.Lock()
	defer h.eng.mu.Unlock()
	o := h.eng.opts[0]
	if o.Timeout != time.Hour || o.Grace != 3*time.Second || o.MaxOutput != 4096 || len(o.Secrets) != 1 || o.Secrets[0] != "sup3r-s3cret-token" {
		t.Fatalf("one-shot options %+v", o)
	}
}

func TestScheduler_PanicInARunIsAFailedRunAndTheSchedulerGoesOn(t *testing.T) {
	h := newHarness(t, t0)
	logs := &syncWriter{w: &strings.Builder{}}
	h.s.Log = hclog.New(&hclog.LoggerOptions{Output: logs})
	h.s.Update(testEnv(envs.JobSpec{Name: "buggy", Schedule: "@daily"}), "rev1")
	h.eng.mu.Lock()
	h.eng.panics = true
	h.eng.mu.Unlock()
	h.s.RunNow("buggy", "")
	r := h.settled(t, "buggy", 1, allDone)[0]
	if r.Status != StatusFailed || r.Class != "verdict" || !strings.Contains(r.Reason, "fake engine: a bug") || strings.Contains(r.Reason, "goroutine") || r.Finished.IsZero() {
		t.Fatalf("record of the panicked run %+v", r)
	}
	if !strings.Contains(logs.String(), "job run panicked") || !strings.Contains(logs.String(), "runtime/debug.Stack") {
		t.Fatalf("the stack is not in the log:\n%s", logs.String())
	}
	// The scheduler goes on: the next run runs.
	h.eng.mu.Lock()
	h.eng.panics = false
	h.eng.mu.Unlock()
	id, _ := h.s.RunNow("buggy", "")
	h.settled(t, "buggy", 2, func([]Run) bool { return h.eng.running() == 2 })
	h.eng.exit(t, id, 0)
	if r := h.settled(t, "buggy", 2, func(rs []Run) bool { return rs[0].Done() })[0]; r.Status != StatusSucceeded {
		t.Fatalf("run after the panic %+v", r)
	}
}

// syncWriter lets the run goroutines and the test share a log buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func TestScheduler_RecoverKeepsARunItCannotKillAndSaysSo(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "long", Schedule: "@daily"}), "rev1")
	h.s.RunNow("long", "")
	// Its record names the container (saved once the container started):
	// that save must not land after the Recover below.
	h.settled(t, "long", 1, func(rs []Run) bool { return h.eng.running() == 1 && rs[0].Container != "" })

	h.eng.mu.Lock()
	h.eng.killErr = failure.AsOutage(errors.New("kill container c1: engine unreachable"))
	h.eng.mu.Unlock()
	h2 := &Scheduler{Env: "prod", Store: h.s.Store, Runner: h.eng, Reaper: h.eng, Now: h.clk.now}
	err := h2.Recover(context.Background())
	if !failure.IsOutage(err) || !strings.Contains(err.Error(), "engine unreachable") {
		t.Fatalf("Recover with a kill failing: %v", err)
	}
	if r := h.runs(t, "long")[0]; r.Status != StatusRunning || h.eng.running() != 1 {
		t.Fatalf("a run whose container still runs was marked %s (%d containers)", r.Status, h.eng.running())
	}
	h.eng.mu.Lock()
	h.eng.killErr = nil
	h.eng.mu.Unlock()
	if err := h2.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := h.runs(t, "long")[0]; r.Status != StatusInterrupted || h.eng.running() != 0 {
		t.Fatalf("second Recover: %+v, %d containers", r, h.eng.running())
	}
}

func TestStore_ReadsThePreviousFormatAndWritesItsVersion(t *testing.T) {
	st := &Store{Dir: t.TempDir()}
	// A record as berth wrote it before the store had a version.
	old := `{
  "id": "20261124T100000.000Z-0001abcd",
  "job": "nightly",
  "trigger": "schedule",
  "scheduled": "2026-11-24T10:00:00Z",
  "started": "2026-11-24T10:00:01Z",
  "finished": "2026-11-24T10:00:03Z",
  "duration_ms": 2000,
  "status": "failed",
  "exit_code": 3,
  "reason": "exit code 3",
  "image": "reg/app@sha256:aa",
  "revision": "rev1",
  "job_hash": "h",
  "container": "demo-job-nightly-x",
  "stdout_dropped": 10
}
`
	os.MkdirAll(filepath.Join(st.Dir, "runs", "nightly"), 0o700)
	os.WriteFile(filepath.Join(st.Dir, "runs", "nightly", "20261124T100000.000Z-0001abcd.json"), []byte(old), 0o600)
	rs, err := st.Runs("nightly")
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v %+v", err, rs)
	}
	r := rs[0]
	if r.Status != StatusFailed || *r.ExitCode != 3 || r.DurationMS != 2000 || r.StdoutDropped != 10 || !r.Finished.Equal(utc("2026-11-24T10:00:03Z")) {
		t.Fatalf("old record read as %+v", r)
	}
	if err := st.Save(&r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(st.Dir, "runs", "nightly", r.ID+".json"))
	if !strings.Contains(string(b), `"version": 1`) {
		t.Fatalf("saved record has no version:\n%s", b)
	}
}

// refusingSignatures refuses every image, as an enforce rule does an
// unsigned one.
type refusingSignatures struct {
	asked []string
	env   []*imagesig.Policy // the environment's own rules each check got
}

func (s *refusingSignatures) Check(_ context.Context, ref string, env *imagesig.Policy) error {
	s.asked, s.env = append(s.asked, ref), append(s.env, env)
	return failure.AsVerdict(errors.New("no valid signature"))
}

func TestScheduler_AnImageRefusedBySignaturesIsAFailedRunAndNothingRuns(t *testing.T) {
	h := newHarness(t, t0)
	sigs := &refusingSignatures{}
	h.s.Signatures = sigs
	env := testEnv(envs.JobSpec{Name: "report", Schedule: "@daily"})
	// The environment's own rules (x-berth.images.verify) apply to its
	// jobs' images as to its services'.
	own, err := imagesig.Compile([]imagesig.Rule{{Prefix: "*", Keyless: &imagesig.Keyless{Issuer: "https://i", Subject: ".*", TrustedRoot: "root.json"}}},
		"x-berth.images.verify", func(string) ([]byte, error) {
			return []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	env.Images = own
	h.s.Update(env, "rev1")
	h.s.RunNow("report", "")
	r := h.settled(t, "report", 1, allDone)[0]
	if r.Status != StatusFailed || r.Class != "verdict" || !strings.Contains(r.Reason, "no valid signature") || len(sigs.asked) != 1 || sigs.asked[0] != "reg/app@sha256:aa" {
		t.Fatalf("run %+v, checked %v", r, sigs.asked)
	}
	if sigs.env[0] != own {
		t.Errorf("the job's image was checked without the environment's own rules")
	}
	if h.eng.n != 0 {
		t.Fatalf("%d containers ran from a refused image", h.eng.n)
	}
}
