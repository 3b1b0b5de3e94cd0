package reconcile

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/failure"
)

// fakeFleet records what a pass asks of the fleet and answers as told.
type fakeFleet struct {
	mu       sync.Mutex
	ctl      fleet.Control
	ctlErr   error
	admitErr error
	// good, when set, is what a joining host (no live revision) is told
	// to deploy first.
	good   string
	admits []fleet.RolloutRequest
	// waits, when set, is what Admit tells req.Waiting (then "").
	waits []string
}

func (f *fakeFleet) Admit(_ context.Context, _ string, req fleet.RolloutRequest) (*fleet.Admission, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.admits = append(f.admits, req)
	if req.Waiting != nil {
		waits := f.waits
		if waits == nil {
			waits = []string{"queued for a deploy slot"}
		}
		for _, w := range waits {
			req.Waiting(w)
		}
		req.Waiting("")
	}
	if f.admitErr != nil {
		return nil, f.admitErr
	}
	if req.Live == "" && f.good != "" && f.good != req.Revision {
		return &fleet.Admission{Revision: f.good, Joining: true, Slot: -1}, nil
	}
	return &fleet.Admission{Revision: req.Revision, Slot: -1}, nil
}

func (f *fakeFleet) Control(context.Context, string) (fleet.Control, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctl, f.ctlErr
}

func (f *fakeFleet) admitted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.admits {
		out = append(out, r.Revision)
	}
	return out
}

func fleetAgent(t *testing.T) (*Agent, *fakeHost, *fakeSource, *fakeFleet) {
	t.Helper()
	host := newFakeHost()
	src := &fakeSource{head: "c1"}
	a, _ := newAgent(t, src, host)
	ff := &fakeFleet{}
	a.Fleet = ff
	a.Env = "prod"
	load := a.Load
	a.Load = func(ctx context.Context, rev *Revision) (*envs.Env, error) {
		e, err := load(ctx, rev)
		if e != nil {
			e.Rollout = &envs.Rollout{Canary: 1, MaxParallel: "25%", Pause: time.Minute}
		}
		return e, err
	}
	return a, host, src, ff
}

func TestFleet_EachNewRevisionIsAdmittedWithItsPolicyAndTheLiveRevision(t *testing.T) {
	a, host, src, ff := fleetAgent(t)
	var waits []string
	a.OnProgress = func(p Progress) {
		if p.Phase == PhaseFleet {
			waits = append(waits, string(p.Waiting))
		}
	}
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx); err != nil { // nothing new: not admitted again
		t.Fatal(err)
	}
	src.head = "c2"
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := ff.admitted(); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("admitted %v", got)
	}
	req := ff.admits[1]
	if req.Live != "c1" || req.Policy != (fleet.Policy{Canary: 1, MaxParallel: "25%", Pause: time.Minute}) {
		t.Fatalf("request %+v", req)
	}
	if got := strings.Join(host.running(), ","); got != "web@c2" {
		t.Fatalf("running %s", got)
	}
	if !slices.Contains(waits, "queued for a deploy slot") || waits[len(waits)-1] != "" {
		t.Fatalf("waits told to OnProgress: %q", waits)
	}
	recs, err := a.Journal.List()
	if err != nil || len(recs) == 0 || recs[0].Commit != "c2" {
		t.Fatalf("journal %+v, %v", recs, err)
	}
	if tr := recs[0].Fleet; tr == nil || tr.Admitted.IsZero() || tr.Released.Before(tr.Admitted) || tr.Asked.After(tr.Admitted) || tr.Outcome != "succeeded" {
		t.Fatalf("the deploy's fleet turn in its record: %+v", tr)
	}
}

func TestFleet_AHaltedRevisionIsHeldNotFailedUntilRetry(t *testing.T) {
	a, host, src, ff := fleetAgent(t)
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	ff.ctl.Retry = 7
	src.head = "c2"
	ff.admitErr = failure.AsVerdict(&fleet.HaltedError{Halt: fleet.Halt{Revision: "c2", Host: "web-1", Reason: "servers: never healthy"}})
	if err := a.Check(ctx); err != nil {
		t.Fatalf("a held revision is recorded, not returned: %v", err)
	}
	st, _ := LoadState(a.StateDir)
	if st.Failed != nil || st.FleetHeld == nil || st.FleetHeld.Commit != "c2" || st.FleetHeld.Reason != "servers: never healthy (on web-1)" {
		t.Fatalf("state: failed %+v held %+v", st.Failed, st.FleetHeld)
	}
	recs, _ := a.Journal.List()
	if recs[0].Result != ResultHeld || recs[0].Commit != "c2" || recs[0].Class != "verdict" {
		t.Fatalf("record %+v", recs[0])
	}
	// Held: the live revision is self-healed, the head never asked for again.
	for id, c := range host.containers {
		if c.Service == "web" {
			host.containers[id].State = "exited"
		}
	}
	for range 2 {
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(host.running(), ","); got != "web@c1" {
		t.Fatalf("running %s, want web@c1 restored", got)
	}
	if n := len(ff.admitted()); n != 2 {
		t.Fatalf("admitted %v: a held revision was asked for again", ff.admitted())
	}
	// berth retry somewhere in the fleet: the generation grows.
	ff.admitErr = nil
	ff.ctl.Retry = 9
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(host.running(), ","); got != "web@c2" {
		t.Fatalf("after a fleet retry running %s", got)
	}
	st, _ = LoadState(a.StateDir)
	if st.FleetHeld != nil || st.FleetRetry != 9 || st.Live.Commit != "c2" {
		t.Fatalf("state after retry: %+v", st)
	}
}

func TestFleet_EtcdUnreachableWaitsForANewRevisionAndSelfHealsTheLiveOne(t *testing.T) {
	a, host, src, ff := fleetAgent(t)
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	ff.ctlErr = failure.AsOutage(errors.New("etcd read: context deadline exceeded"))
	// No new commit: passes go on (self-heal included) without etcd.
	for id, c := range host.containers {
		if c.Service == "web" {
			host.containers[id].State = "exited"
		}
	}
	if err := a.Check(ctx); err != nil {
		t.Fatalf("without a new commit etcd is not needed: %v", err)
	}
	if got := strings.Join(host.running(), ","); got != "web@c1" {
		t.Fatalf("running %s", got)
	}
	// A new commit waits for etcd: an outage, nothing deployed.
	src.head = "c2"
	err := a.Check(ctx)
	if !failure.IsOutage(err) || !strings.Contains(err.Error(), "waiting for etcd") {
		t.Fatalf("error %v, want an outage waiting for etcd", err)
	}
	recs, _ := a.Journal.List()
	if recs[0].Result != ResultOutage || recs[0].Commit != "c2" || !strings.Contains(recs[0].Reason, "waiting for etcd") {
		t.Fatalf("record %+v", recs[0])
	}
	if got := strings.Join(host.running(), ","); got != "web@c1" || len(ff.admitted()) != 1 {
		t.Fatalf("running %s, admitted %v", got, ff.admitted())
	}
	// An Admit that cannot reach etcd is the same outage.
	ff.ctlErr = nil
	ff.admitErr = failure.AsOutage(errors.New("etcd session lost"))
	if err := a.Check(ctx); !failure.IsOutage(err) || !strings.Contains(err.Error(), "waiting for etcd") {
		t.Fatalf("error %v", err)
	}
	st, _ := LoadState(a.StateDir)
	if st.Failed != nil || st.Live.Commit != "c1" {
		t.Fatalf("state %+v", st)
	}
	ff.admitErr = nil
	if err := a.Check(ctx); err != nil || strings.Join(host.running(), ",") != "web@c2" {
		t.Fatalf("etcd back: %v, running %v", err, host.running())
	}
}

// Admit's "waiting for etcd" (a queued host whose etcd went silent) is
// the pass's WaitEtcd, and the reason it waited for comes back after.
func TestFleet_AQueuedHostWhoseEtcdGoesSilentWaitsForEtcd(t *testing.T) {
	a, _, src, ff := fleetAgent(t)
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	var waits []Wait
	a.OnProgress = func(p Progress) {
		if p.Waiting != "" && (len(waits) == 0 || waits[len(waits)-1] != p.Waiting) {
			waits = append(waits, p.Waiting)
		}
	}
	ff.waits = []string{"queued for a deploy slot", fleet.WaitingForEtcd, "queued for a deploy slot"}
	src.head = "c2"
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	want := []Wait{"queued for a deploy slot", WaitEtcd, "queued for a deploy slot"}
	if !slices.Equal(waits, want) {
		t.Fatalf("the pass waited for %q, want %q", waits, want)
	}
}

func TestFleet_PausesKeepTheLiveRevisionAndSelfHeal(t *testing.T) {
	for _, fleetWide := range []bool{false, true} {
		t.Run(map[bool]string{false: "berth pause", true: "berth pause --fleet"}[fleetWide], func(t *testing.T) {
			a, host, src, ff := fleetAgent(t)
			ctx := t.Context()
			if err := a.Check(ctx); err != nil {
				t.Fatal(err)
			}
			if fleetWide {
				ff.ctl.Pause = &fleet.PauseInfo{By: "ada@ops", Reason: "incident 42"}
			} else if err := SubmitRequest(a.StateDir, Request{Action: "pause", By: "ada@web-1", Reason: "incident 42", At: time.Now()}); err != nil {
				t.Fatal(err)
			}
			src.head = "c2"
			for id, c := range host.containers {
				if c.Service == "web" {
					host.containers[id].State = "exited"
				}
			}
			if err := a.Check(ctx); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(host.running(), ","); got != "web@c1" || len(ff.admitted()) != 1 {
				t.Fatalf("paused: running %s, admitted %v", got, ff.admitted())
			}
			st, _ := LoadState(a.StateDir)
			if !fleetWide && (st.Pause == nil || st.Pause.By != "ada@web-1" || st.Pause.Reason != "incident 42") {
				t.Fatalf("pause not kept: %+v", st.Pause)
			}
			if fleetWide {
				ff.ctl.Pause = nil
			} else if err := SubmitRequest(a.StateDir, Request{Action: "resume"}); err != nil {
				t.Fatal(err)
			}
			if err := a.Check(ctx); err != nil || strings.Join(host.running(), ",") != "web@c2" {
				t.Fatalf("resumed: %v, running %v", err, host.running())
			}
		})
	}
}

func TestFleet_AJoiningHostDeploysTheGoodRevisionFirst(t *testing.T) {
	a, host, src, ff := fleetAgent(t)
	ctx := t.Context()
	ff.good = "c1"
	src.head = "c2"
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := LoadState(a.StateDir)
	if got := strings.Join(host.running(), ","); got != "web@c1" || st.Live.Commit != "c1" {
		t.Fatalf("joining: running %s, live %+v", got, st.Live)
	}
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(host.running(), ","); got != "web@c2" || !slices.Equal(ff.admitted(), []string{"c2", "c2"}) {
		t.Fatalf("then the head: running %s, admitted %v", got, ff.admitted())
	}
}

func TestFleet_ARollbackOfTheFleetDeploysItsRevisionUntilANewCommit(t *testing.T) {
	a, host, src, ff := fleetAgent(t)
	ctx := t.Context()
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	src.head = "c2"
	if err := a.Check(ctx); err != nil {
		t.Fatal(err)
	}
	ff.ctl.Rollback = &fleet.RollbackInfo{Commit: "c1", Head: "c2", By: "ada@ops"}
	for range 2 {
		if err := a.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(host.running(), ","); got != "web@c1" || !slices.Equal(ff.admitted(), []string{"c1", "c2", "c1"}) {
		t.Fatalf("rolled back: running %s, admitted %v", got, ff.admitted())
	}
	src.head = "c3"
	if err := a.Check(ctx); err != nil || strings.Join(host.running(), ",") != "web@c3" {
		t.Fatalf("a new commit ends it: %v, running %v", err, host.running())
	}
}

func TestFleet_HowAnAdmittedDeployEnds(t *testing.T) {
	live, done := context.Background(), func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}()
	verdict := failure.AsVerdict(errors.New("servers: never healthy"))
	outage := failure.AsOutage(errors.New("registry unreachable"))
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want fleet.Outcome
	}{
		{"deployed", live, nil, fleet.Succeeded},
		{"a verdict halts the revision", live, verdict, fleet.Failed},
		{"an outage gives the slot back", live, outage, fleet.Abandoned},
		{"a shutdown gives the slot back", done, verdict, fleet.Abandoned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := admissionOutcome(tc.ctx, tc.err, failure.Of(tc.err)); got != tc.want {
				t.Fatalf("outcome %v, want %v", got, tc.want)
			}
		})
	}
}
