package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// fakeFleet is the fleet's claims in memory, shared by several hosts'
// schedulers (each through its own fakeHost). The real one, on etcd, is
// tested in fleet/ and by fleet_integration_test.go.
type fakeFleet struct {
	mu     sync.Mutex
	down   bool
	tok    int64
	recs   map[string]*fakeRecord // job/T → record
	claims int
	// refused counts claims asked while down.
	refused int
}

// fakeRecord is the fake fleet's record of one scheduled time.
type fakeRecord struct {
	Job       string
	Scheduled time.Time
	Host      string
	Token     int64
	Status    string
	Reason    string
	RunID     string
}

type fakeHost struct {
	f    *fakeFleet
	name string
}

func (h fakeHost) Host() string { return h.name }

func (h fakeHost) Claim(_ context.Context, env, job string, t time.Time, p FleetPolicy) (Claim, error) {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		f.refused++
		return nil, failure.AsOutage(fmt.Errorf("etcd: connection refused"))
	}
	if f.recs == nil {
		f.recs = map[string]*fakeRecord{}
	}
	k := job + "/" + t.UTC().Format(time.RFC3339Nano)
	if r := f.recs[k]; r != nil {
		return nil, fmt.Errorf("%w: by %s", ErrClaimed, r.Host)
	}
	f.tok++
	f.claims++
	r := &fakeRecord{Job: job, Scheduled: t, Host: h.name, Token: f.tok, Status: "running"}
	f.recs[k] = r
	return &fakeClaim{f: f, r: r}, nil
}

func (h fakeHost) LastScheduled(_ context.Context, env, job string) (time.Time, error) {
	f := h.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return time.Time{}, failure.AsOutage(fmt.Errorf("etcd: connection refused"))
	}
	var last time.Time
	for _, r := range f.recs {
		if r.Job == job && r.Scheduled.After(last) {
			last = r.Scheduled
		}
	}
	return last, nil
}

func (h fakeHost) Active(context.Context, string, string) ([]FleetActive, error) { return nil, nil }

type fakeClaim struct {
	f *fakeFleet
	r *fakeRecord
}

func (c *fakeClaim) Token() int64 { return c.r.Token }
func (c *fakeClaim) Finish(_ context.Context, r Run) error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.r.Status, c.r.RunID, c.r.Reason = string(r.Status), r.ID, r.Reason
	return nil
}

func (f *fakeFleet) record(job string, t time.Time) *fakeRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := f.recs[job+"/"+t.UTC().Format(time.RFC3339Nano)]; r != nil {
		c := *r
		return &c
	}
	return nil
}

func fleetHarnesses(t *testing.T, f *fakeFleet, n int, start time.Time) []*harness {
	var hs []*harness
	for i := range n {
		h := newHarness(t, start)
		h.s.Fleet = fakeHost{f: f, name: fmt.Sprintf("web-%d", i+1)}
		hs = append(hs, h)
	}
	return hs
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestFleetScheduler_EachTimeRunsOnOneHostWithItsToken(t *testing.T) {
	f := &fakeFleet{}
	hs := fleetHarnesses(t, f, 3, t0.Add(3*time.Second)) // @every 10s: aligned to :10, not :13
	job := envs.JobSpec{Name: "tick", Schedule: "@every 10s"}
	for _, h := range hs {
		h.s.Update(testEnv(job), "rev1")
	}
	for _, h := range hs {
		h.at(t0.Add(10 * time.Second))
	}
	waitFor(t, "a claim and a run", func() bool {
		n := 0
		for _, h := range hs {
			n += h.eng.running()
		}
		return n == 1
	})
	var runner *harness
	for _, h := range hs {
		if h.eng.running() == 1 {
			runner = h
		} else if rs := h.runs(t, "tick"); len(rs) != 0 {
			t.Errorf("a host that lost the claim recorded %+v", rs)
		}
	}
	r := runner.settled(t, "tick", 1, func([]Run) bool { return true })[0]
	if !r.Scheduled.Equal(t0.Add(10*time.Second)) || r.Host != runner.s.Fleet.Host() || r.FenceToken != 1 {
		t.Fatalf("run %+v", r)
	}
	runner.eng.mu.Lock()
	var env []string
	for _, c := range runner.eng.ctrs {
		env = c.env
	}
	runner.eng.mu.Unlock()
	if !slices.Contains(env, "BERTH_FENCE_TOKEN=1") {
		t.Errorf("container env %v, want BERTH_FENCE_TOKEN=1", env)
	}
	runner.eng.exit(t, r.ID, 0)
	runner.settled(t, "tick", 1, allDone)
	waitFor(t, "the result in the fleet", func() bool {
		fr := f.record("tick", t0.Add(10*time.Second))
		return fr != nil && fr.Status == string(StatusSucceeded) && fr.RunID == r.ID
	})
	if f.claims != 1 {
		t.Errorf("%d claims made, want 1", f.claims)
	}
}

func TestFleetScheduler_RunOnAllRunsOnEveryHostWithoutAClaim(t *testing.T) {
	f := &fakeFleet{}
	hs := fleetHarnesses(t, f, 2, t0)
	for _, h := range hs {
		h.s.Update(testEnv(envs.JobSpec{Name: "local", Schedule: "@every 10s", RunOn: envs.RunOnAll}), "rev1")
		h.at(t0.Add(10 * time.Second))
	}
	for _, h := range hs {
		r := h.settled(t, "local", 1, func([]Run) bool { return h.eng.running() == 1 })[0]
		if r.Host != "" || r.FenceToken != 0 {
			t.Errorf("run_on: all run %+v carries a claim", r)
		}
	}
	if f.claims != 0 {
		t.Errorf("%d claims for a run_on: all job", f.claims)
	}
}

func TestFleetScheduler_EtcdDown_TimeSkippedWaitingForEtcdThenRunsAgain(t *testing.T) {
	f := &fakeFleet{down: true}
	h := fleetHarnesses(t, f, 1, t0)[0]
	h.s.Update(testEnv(envs.JobSpec{Name: "tick", Schedule: "@every 10s", StartingDeadline: 2 * time.Second}), "rev1")
	h.at(t0.Add(10 * time.Second))
	// The first claim fails; the time waits for etcd until its deadline.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		f.mu.Lock()
		n := f.refused
		f.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no claim asked while etcd is down")
		}
	}
	h.clk.set(t0.Add(13 * time.Second))
	rs := h.settled(t, "tick", 1, allDone)
	if rs[0].Status != StatusSkipped || !strings.Contains(rs[0].Reason, "waiting for etcd") || h.eng.running() != 0 {
		t.Fatalf("while etcd is down: %+v", rs[0])
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	h.at(t0.Add(20 * time.Second))
	rs = h.settled(t, "tick", 2, func([]Run) bool { return h.eng.running() == 1 })
	if rs[0].Status != StatusRunning || !rs[0].Scheduled.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("after etcd is back: %+v", rs[0])
	}
}

func TestFleetScheduler_MissedRunOnceDecidedFleetWide(t *testing.T) {
	f := &fakeFleet{}
	// The fleet last ran the job at 10:00; every host was down until
	// 10:05:30. Three hosts start: one runs the 10:05 time, once.
	old := fakeHost{f: f, name: "web-0"}
	c, _ := old.Claim(context.Background(), "prod", "hourly", t0, FleetPolicy{})
	c.Finish(context.Background(), Run{Status: StatusSucceeded})
	now := t0.Add(5*time.Minute + 30*time.Second)
	hs := fleetHarnesses(t, f, 3, now)
	for _, h := range hs {
		h.s.Update(testEnv(envs.JobSpec{Name: "hourly", Schedule: "* * * * *", Missed: "run_once"}), "rev1")
		h.at(now)
	}
	waitFor(t, "the catch-up run", func() bool {
		n := 0
		for _, h := range hs {
			n += h.eng.running()
		}
		return n == 1
	})
	for _, h := range hs {
		for _, r := range h.runs(t, "hourly") {
			if r.Trigger != TriggerMissed || !r.Scheduled.Equal(t0.Add(5*time.Minute)) {
				t.Errorf("%s: %+v", h.s.Fleet.Host(), r)
			}
		}
	}
	if f.claims != 2 {
		t.Errorf("%d claims, want the old one and one catch-up", f.claims)
	}
}

// `concurrency: forbid` yields only to a run of an earlier time on
// another host: two claims landing close together (web-2 late with
// 12:00:00, web-7 with 12:00:03) see each other's marks, and the earlier
// runs while the later skips — not both skipped (found by
// scripts/chaos-fleet --seed 18 --duration 30m).
func TestForbidden_OnlyARunOfAnEarlierTimeOnAnotherHostCounts(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(3 * time.Second)
	act := []FleetActive{{Scheduled: t0, Host: "web-2", Token: 10}, {Scheduled: t1, Host: "web-7", Token: 11}}
	if got := forbidden(act, t0, "web-2"); got != "" {
		t.Errorf("the earlier time skipped: %s", got)
	}
	if got := forbidden(act, t1, "web-7"); !strings.Contains(got, "the run of 2026-12-06T12:00:00Z on host web-2 is still running") {
		t.Errorf("the later time: %q, want it skipped for web-2's run", got)
	}
	if got := forbidden(act[:1], t1, "web-2"); got != "" {
		t.Errorf("this host's own run counted fleet-wide: %s", got)
	}
}
