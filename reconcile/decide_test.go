package reconcile

import (
	"errors"
	"testing"
	"time"

	"berth.dev/berth/internal/failure"
)

func TestDecide_EveryEnding(t *testing.T) {
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	boom := errors.New("boom")
	live := &RevisionState{Commit: "c1", DeployID: "d0", At: now.Add(-time.Hour)}
	failedC2 := &RevisionState{Commit: "c2", DeployID: "d1", At: now.Add(-time.Minute), Reason: "earlier"}
	tests := []struct {
		name       string
		in         ending
		wantResult Result
		wantClass  failure.Class
		wantRet    bool
		wantLive   string
		wantFailed string
	}{
		{name: "no head yet", in: ending{}, wantResult: ResultUnchanged},
		{name: "the live revision, nothing to do", in: ending{target: "c1", live: "c1", state: State{Live: live}},
			wantResult: ResultUnchanged, wantLive: "c1"},
		{name: "the live revision restored", in: ending{target: "c1", live: "c1", changed: true, state: State{Live: live, Failed: failedC2}},
			wantResult: ResultSucceeded, wantLive: "c1", wantFailed: "c2"},
		{name: "a new commit went live and forgets the old failure", in: ending{target: "c3", live: "c1", state: State{Live: live, Failed: failedC2}},
			wantResult: ResultSucceeded, wantLive: "c3"},
		{name: "stopping mid-deploy", in: ending{err: failure.AsOutage(boom), class: failure.Outage, canceled: true, target: "c3", live: "c1", state: State{Live: live}},
			wantResult: ResultInterrupted, wantClass: failure.Unclassed, wantRet: true, wantLive: "c1"},
		{name: "halted fleet-wide", in: ending{err: failure.AsVerdict(boom), class: failure.Verdict, held: true, target: "c3", live: "c1", state: State{Live: live}},
			wantResult: ResultHeld, wantClass: failure.Verdict, wantLive: "c1"},
		{name: "a verdict on a new revision is recorded, not returned", in: ending{err: failure.AsVerdict(boom), class: failure.Verdict, target: "c3", live: "c1", state: State{Live: live}},
			wantResult: ResultFailed, wantClass: failure.Verdict, wantLive: "c1", wantFailed: "c3"},
		{name: "a verdict on the live revision is returned, never marked", in: ending{err: failure.AsVerdict(boom), class: failure.Verdict, target: "c1", live: "c1", state: State{Live: live}},
			wantResult: ResultFailed, wantClass: failure.Verdict, wantRet: true, wantLive: "c1"},
		{name: "a verdict on no revision is returned", in: ending{err: failure.AsVerdict(boom), class: failure.Verdict},
			wantResult: ResultFailed, wantClass: failure.Verdict, wantRet: true},
		{name: "an outage", in: ending{err: failure.AsOutage(boom), class: failure.Outage, target: "c3", live: "c1", state: State{Live: live}},
			wantResult: ResultOutage, wantClass: failure.Outage, wantRet: true, wantLive: "c1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.id, tc.in.now = "d9", now
			before := tc.in.state
			d := decide(tc.in)
			if d.result != tc.wantResult || d.class != tc.wantClass || (d.ret != nil) != tc.wantRet {
				t.Fatalf("decide = %s, %s, ret %v; want %s, %s, ret %v", d.result, d.class, d.ret, tc.wantResult, tc.wantClass, tc.wantRet)
			}
			if got := commitOf(d.state.Live); got != tc.wantLive {
				t.Errorf("live %q, want %q", got, tc.wantLive)
			}
			if got := commitOf(d.state.Failed); got != tc.wantFailed {
				t.Errorf("failed %q, want %q", got, tc.wantFailed)
			}
			if before.Live != nil && *before.Live != *live {
				t.Error("decide changed the state it was given")
			}
		})
	}
}

func commitOf(r *RevisionState) string {
	if r == nil {
		return ""
	}
	return r.Commit
}

func TestResultLabelAndPhaseDeploys(t *testing.T) {
	for r, want := range map[Result]string{ResultSucceeded: "ok", ResultUnchanged: "ok", ResultFailed: "verdict", ResultOutage: "outage",
		ResultHeld: "held", ResultInterrupted: "interrupted", ResultRunning: "running"} {
		if got := r.Label(); got != want {
			t.Errorf("%s.Label() = %q, want %q", r, got, want)
		}
	}
	for _, p := range []Phase{PhaseList, PhaseFetch, PhaseLoad, PhaseFleet, PhasePlan} {
		if p.Deploys() {
			t.Errorf("%s is not part of a deploy", p)
		}
	}
	for _, p := range []Phase{PhasePrepare, PhaseCLI, PhaseWorkers, PhaseServers, PhaseWatch, PhaseRetire} {
		if !p.Deploys() {
			t.Errorf("%s is part of a deploy", p)
		}
	}
}

func TestHeadRefused_OnlyByAVerdict(t *testing.T) {
	st := State{Live: &RevisionState{Commit: "c1"}, Failed: &RevisionState{Commit: "c2"}}
	if !headRefused(st, "c2") || headRefused(st, "c3") || headRefused(st, "c1") || headRefused(st, "") {
		t.Fatal("a failed head is refused; another head, the live one or none is not")
	}
	if !headRefused(State{FleetHeld: &FleetHeld{Commit: "c4"}}, "c4") {
		t.Fatal("a head halted fleet-wide is refused")
	}
	if headRefused(State{Live: &RevisionState{Commit: "c1"}, Hold: &Hold{Commit: "c1"}, Pause: &Pause{}}, "c5") {
		t.Fatal("a hold or a pause is the operator's, not a verdict")
	}
}
