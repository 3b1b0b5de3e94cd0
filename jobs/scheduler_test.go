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
	"berth.dev/berth/secrets"
)

// fakeEngine runs "containers" that exit when the test says so.
type fakeEngine struct {
	mu      sync.Mutex
	n       int
	ctrs    map[string]*fakeCtr
	removed []string
	stopped []string
	opts    []engine.OneShot
	panics  bool // RunOnce panics
	killErr error
}

type fakeCtr struct {
	job, run string
	env      []string
	exit     chan int
}

func (f *fakeEngine) EnsureImage(context.Context, string) (bool, error)   { return false, nil }
func (f *fakeEngine) EnsureProject(context.Context, *types.Project) error { return nil }

// RunOnce runs a fake container until the test exits it, its timeout
// passes or ctx ends, as engine.RunOnce does: output redacted, container
// removed.
func (f *fakeEngine) RunOnce(ctx context.Context, req *engine.Request, o engine.OneShot) (*engine.RunResult, error) {
	f.mu.Lock()
	if f.ctrs == nil {
		f.ctrs = map[string]*fakeCtr{}
	}
	f.n++
	id := fmt.Sprintf("c%d", f.n)
	c := &fakeCtr{job: req.Config.Labels[engine.LabelJob], run: req.Config.Labels[engine.LabelRun], env: req.Config.Env, exit: make(chan int, 1)}
	f.ctrs[id] = c
	f.opts = append(f.opts, o)
	panics := f.panics
	f.mu.Unlock()
	if panics {
		panic("fake engine: a bug")
	}
	if o.Started != nil {
		o.Started(id)
	}
	res := &engine.RunResult{ExitCode: -1}
	var timeout <-chan time.Time
	if o.Timeout > 0 {
		timeout = time.After(o.Timeout)
	}
	select {
	case code := <-c.exit:
		res.ExitCode = code
	case <-ctx.Done():
		res.Stopped = context.Cause(ctx)
	case <-timeout:
		res.TimedOut = true
	}
	if res.ExitCode < 0 {
		f.mu.Lock()
		f.stopped = append(f.stopped, id)
		f.mu.Unlock()
	}
	out, errb, _, _ := f.Logs(ctx, id, 0)
	res.Stdout, res.Stderr = []byte(secrets.Redact(string(out), o.Secrets)), []byte(secrets.Redact(string(errb), o.Secrets))
	f.Remove(ctx, id)
	return res, nil
}

func (f *fakeEngine) Kill(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.killErr
}
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
	h.s = &Scheduler{Env: "prod", Store: &Store{Dir: t.TempDir()}, Runner: h.eng, Reaper: h.eng, Now: h.clk.now,
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
