package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
)

// fakeEngine runs "containers" that exit when the test says so.
type fakeEngine struct {
	mu      sync.Mutex
	n       int
	ctrs    map[string]*fakeCtr
	removed []string
	stopped []string
}

type fakeCtr struct {
	job, run string
	env      []string
	exit     chan int
}

func (f *fakeEngine) EnsureImage(context.Context, string) (bool, error)   { return false, nil }
func (f *fakeEngine) EnsureProject(context.Context, *types.Project) error { return nil }
func (f *fakeEngine) Create(_ context.Context, req *engine.Request) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctrs == nil {
		f.ctrs = map[string]*fakeCtr{}
	}
	f.n++
	id := fmt.Sprintf("c%d", f.n)
	f.ctrs[id] = &fakeCtr{job: req.Config.Labels[engine.LabelJob], run: req.Config.Labels[engine.LabelRun], env: req.Config.Env, exit: make(chan int, 1)}
	return id, nil
}
func (f *fakeEngine) Start(context.Context, string) error { return nil }
func (f *fakeEngine) WaitExit(ctx context.Context, id string) (int, error) {
	f.mu.Lock()
	c := f.ctrs[id]
	f.mu.Unlock()
	select {
	case code := <-c.exit:
		return code, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}
func (f *fakeEngine) Stop(_ context.Context, id string, _ *time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = append(f.stopped, id)
	return nil
}
func (f *fakeEngine) Kill(context.Context, string) error { return nil }
func (f *fakeEngine) Logs(_ context.Context, id string, _ int) ([]byte, []byte, [2]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.ctrs[id]
	if c == nil {
		return nil, nil, [2]int64{}, fmt.Errorf("no such container %s", id)
	}
	// A careless job prints its environment to stderr.
	return []byte("out of " + c.run + "\n"), []byte("err\n" + strings.Join(c.env, "\n")), [2]int64{}, nil
}
func (f *fakeEngine) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ctrs, id)
	f.removed = append(f.removed, id)
	return nil
}
func (f *fakeEngine) ListJobRuns(context.Context, string) ([]engine.JobContainer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.JobContainer
	for id, c := range f.ctrs {
		out = append(out, engine.JobContainer{ID: id, Job: c.job, Run: c.run, State: "running"})
	}
	return out, nil
}

// exit ends the running container of run.
func (f *fakeEngine) exit(t *testing.T, run string, code int) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.ctrs {
		if c.run == run {
			c.exit <- code
			return
		}
	}
	t.Fatalf("no container for run %s", run)
}

func (f *fakeEngine) running() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.ctrs)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func testEnv(jobs ...envs.JobSpec) *envs.Env {
	p := &types.Project{Name: "demo", Networks: types.Networks{"default": {Name: "demo_default"}}}
	web := types.ServiceConfig{Name: "web"}
	web.Image = "reg/app@sha256:aa"
	env := &envs.Env{Name: "prod", Project: p, Jobs: map[string]envs.JobSpec{},
		Services: []envs.Service{{Name: "web", Hash: "h1", Config: web}}}
	for _, j := range jobs {
		if j.Concurrency == "" {
			j.Concurrency = envs.ConcurrencyForbid
		}
		if j.History == 0 {
			j.History = 50
		}
		if j.Missed == "" {
			j.Missed = "skip"
		}
		if j.Service == "" && j.Image == "" {
			j.Service = "web"
		}
		env.Jobs[j.Name] = j
	}
	return env
}

type harness struct {
	s   *Scheduler
	eng *fakeEngine
	clk *clock
}

func newHarness(t *testing.T, start time.Time) *harness {
	h := &harness{eng: &fakeEngine{}, clk: &clock{t: start}}
	h.s = &Scheduler{Env: "prod", Store: &Store{Dir: t.TempDir()}, Engine: h.eng, Now: h.clk.now,
		Jitter: func(time.Duration) time.Duration { return 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); h.s.wg.Wait() })
	h.s.mu.Lock()
	h.s.init()
	h.s.ctx = ctx
	h.s.mu.Unlock()
	return h
}

// at moves the clock and runs one scheduling step.
func (h *harness) at(t time.Time) { h.clk.set(t); h.s.tick() }

func (h *harness) runs(t *testing.T, job string) []Run {
	t.Helper()
	runs, err := h.s.Store.Runs(job)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// settled waits for the run goroutines to record what they did.
func (h *harness) settled(t *testing.T, job string, n int, done func(rs []Run) bool) []Run {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		rs := h.runs(t, job)
		if len(rs) == n && done(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: runs %+v", job, rs)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func allDone(rs []Run) bool {
	for _, r := range rs {
		if !r.Done() {
			return false
		}
	}
	return true
}

var t0 = utc("2026-11-24T10:00:00Z")

func TestScheduler_RunsWhenDueAfterJitterAndKeepsTheRecord(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Jitter = func(max time.Duration) time.Duration { return max / 2 }
	if err := h.s.Update(testEnv(envs.JobSpec{Name: "tick", Schedule: "@every 10s", Jitter: 4 * time.Second, Command: []string{"tick"}}), "rev1"); err != nil {
		t.Fatal(err)
	}
	l, _ := h.s.Store.Listing()
	if len(l.Jobs) != 1 || !l.Jobs[0].Next.Equal(t0.Add(12*time.Second)) || l.Revision != "rev1" {
		t.Fatalf("listing %+v", l)
	}
	h.at(t0.Add(11 * time.Second))
	if h.eng.running() != 0 {
		t.Fatal("started before schedule + jitter")
	}
	h.at(t0.Add(12 * time.Second))
	rs := h.settled(t, "tick", 1, func([]Run) bool { return h.eng.running() == 1 })
	if rs[0].Status != StatusRunning || !rs[0].Scheduled.Equal(t0.Add(10*time.Second)) || rs[0].Trigger != TriggerSchedule {
		t.Fatalf("run in flight: %+v", rs[0])
	}
	h.eng.exit(t, rs[0].ID, 3)
	rs = h.settled(t, "tick", 1, allDone)
	r := rs[0]
	if r.Status != StatusFailed || r.ExitCode == nil || *r.ExitCode != 3 || r.Image != "reg/app@sha256:aa" || r.Revision != "rev1" || r.Container == "" {
		t.Fatalf("record %+v", r)
	}
	out, errb, _ := h.s.Store.Output("tick", r.ID)
	if string(out) != "out of "+r.ID+"\n" || !strings.HasPrefix(string(errb), "err\n") {
		t.Fatalf("output %q %q", out, errb)
	}
	if h.eng.running() != 0 {
		t.Fatal("container not removed")
	}
	l, _ = h.s.Store.Listing()
	if !l.Jobs[0].Next.Equal(t0.Add(22 * time.Second)) {
		t.Fatalf("next after the run: %s", l.Jobs[0].Next)
	}
}

func TestScheduler_ConcurrencyPolicies(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(
		envs.JobSpec{Name: "forbid", Schedule: "@every 10s"},
		envs.JobSpec{Name: "allow", Schedule: "@every 10s", Concurrency: envs.ConcurrencyAllow},
		envs.JobSpec{Name: "replace", Schedule: "@every 10s", Concurrency: envs.ConcurrencyReplace},
	), "rev1")
	h.at(t0.Add(10 * time.Second))
	h.settled(t, "replace", 1, func([]Run) bool { return h.eng.running() == 3 })
	h.at(t0.Add(20 * time.Second))

	rs := h.settled(t, "forbid", 2, func(rs []Run) bool { return rs[0].Done() })
	if rs[0].Status != StatusSkipped || !strings.Contains(rs[0].Reason, rs[1].ID) || rs[1].Status != StatusRunning {
		t.Errorf("forbid: %+v", rs)
	}
	h.settled(t, "allow", 2, func(rs []Run) bool { return rs[0].Status == StatusRunning && rs[1].Status == StatusRunning })
	rs = h.settled(t, "replace", 2, func(rs []Run) bool { return rs[1].Done() })
	if rs[1].Status != StatusInterrupted || !strings.Contains(rs[1].Reason, "replaced") || rs[0].Status != StatusRunning {
		t.Errorf("replace: %+v", rs)
	}
	// forbid 1, allow 2, replace 1 (the new one; the old was stopped and removed).
	h.settled(t, "replace", 2, func([]Run) bool { return h.eng.running() == 4 })
}

func TestScheduler_ManualRunRespectsConcurrency(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "report", Schedule: "@daily"}), "rev1")
	id, err := h.s.RunNow("report", "req1")
	if err != nil {
		t.Fatal(err)
	}
	h.s.Store.SubmitRequest(Request{ID: "req2", Job: "report", At: t0})
	h.s.TakeRequests()
	rs := h.settled(t, "report", 2, func(rs []Run) bool { return rs[0].Done() })
	if rs[1].ID != id || rs[1].Trigger != TriggerManual || rs[1].Request != "req1" || rs[0].Status != StatusSkipped || rs[0].Request != "req2" {
		t.Fatalf("%+v", rs)
	}
	if _, err := h.s.RunNow("nope", ""); err == nil {
		t.Error("unknown job ran")
	}
}

func TestScheduler_NewRevisionChangesAndRemovesJobsInFlightRunsKeepTheirDefinition(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "a", Schedule: "@every 10s"}, envs.JobSpec{Name: "b", Schedule: "@every 10s"}), "rev1")
	h.at(t0.Add(10 * time.Second))
	running := h.settled(t, "a", 1, func([]Run) bool { return h.eng.running() == 2 })[0]

	h.clk.set(t0.Add(12 * time.Second))
	h.s.Update(testEnv(envs.JobSpec{Name: "a", Schedule: "@every 1m", Command: []string{"new"}}), "rev2")
	l, _ := h.s.Store.Listing()
	if len(l.Jobs) != 1 || l.Jobs[0].Name != "a" || !l.Jobs[0].Next.Equal(t0.Add(72*time.Second)) {
		t.Fatalf("listing after rev2: %+v", l.Jobs)
	}
	h.eng.exit(t, running.ID, 0)
	r := h.settled(t, "a", 1, allDone)[0]
	if r.Revision != "rev1" || r.JobHash != running.JobHash || r.Status != StatusSucceeded {
		t.Fatalf("in-flight run: %+v", r)
	}
	h.at(t0.Add(20 * time.Second))
	if n := len(h.runs(t, "a")) + len(h.runs(t, "b")); n != 2 {
		t.Fatalf("runs after removal and reschedule: %d", n)
	}
	h.at(t0.Add(72 * time.Second))
	rs := h.settled(t, "a", 2, func(rs []Run) bool { return rs[0].Revision == "rev2" })
	if rs[0].JobHash == running.JobHash {
		t.Error("changed job kept its hash")
	}
}

func TestScheduler_MissedRunsWhileDown(t *testing.T) {
	for _, policy := range []string{"skip", "run_once"} {
		t.Run(policy, func(t *testing.T) {
			h := newHarness(t, t0)
			// The last run on record was three days ago.
			h.s.Store.Save(&Run{ID: NewID(t0.Add(-72 * time.Hour)), Job: "nightly", Trigger: TriggerSchedule,
				Scheduled: utc("2026-11-21T03:00:00Z"), Status: StatusSucceeded})
			h.s.Update(testEnv(envs.JobSpec{Name: "nightly", Schedule: "0 3 * * *", Timezone: "UTC", Missed: policy}), "rev1")
			h.at(t0)
			rs := h.settled(t, "nightly", 2, func([]Run) bool { return true })
			r := rs[0]
			if !r.Scheduled.Equal(utc("2026-11-24T03:00:00Z")) || r.Trigger != TriggerMissed {
				t.Fatalf("%+v", r)
			}
			if policy == "skip" && (r.Status != StatusSkipped || !strings.Contains(r.Reason, "3 run(s) missed")) {
				t.Fatalf("skip: %+v", r)
			}
			if policy == "run_once" && r.Status != StatusRunning {
				t.Fatalf("run_once: %+v", r)
			}
			// Never a storm, and no second catch-up on the next step.
			h.at(t0.Add(time.Minute))
			if n := len(h.runs(t, "nightly")); n != 2 {
				t.Fatalf("%d runs", n)
			}
		})
	}
	// A job with no history missed nothing.
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "fresh", Schedule: "0 3 * * *", Missed: "run_once"}), "rev1")
	h.at(t0)
	if n := len(h.runs(t, "fresh")); n != 0 {
		t.Fatalf("new job ran %d times", n)
	}
}

func TestScheduler_TimeoutIsRecorded(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "slow", Schedule: "@daily", Timeout: 20 * time.Millisecond}), "rev1")
	h.s.RunNow("slow", "")
	r := h.settled(t, "slow", 1, allDone)[0]
	if r.Status != StatusTimeout || r.ExitCode != nil || !strings.Contains(r.Reason, "20ms") {
		t.Fatalf("%+v", r)
	}
}

func TestScheduler_RecoverMarksInterruptedAndRemovesContainers(t *testing.T) {
	h := newHarness(t, t0)
	h.s.Update(testEnv(envs.JobSpec{Name: "long", Schedule: "@daily"}), "rev1")
	h.s.RunNow("long", "")
	h.settled(t, "long", 1, func([]Run) bool { return h.eng.running() == 1 })

	// A new agent on the same state dir and engine, the old one gone.
	h2 := &Scheduler{Env: "prod", Store: h.s.Store, Engine: h.eng, Now: h.clk.now}
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
