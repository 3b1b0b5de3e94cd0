package jobs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/jobs"
)

func TestDocker_FleetJobRunsOncePerScheduledTimeAcrossThreeHosts(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	hs := fleetHosts(t, etcd, 3, `
    tick:
      schedule: "@every 10s"
      service: web
`)
	const n = 4
	waitFleet(t, 3*time.Minute, fmt.Sprintf("%d finished runs in the fleet's history", n), func() bool {
		return doneCount(history(t, hs[0], "tick")) >= n
	})
	for _, h := range hs {
		h.stop()
	}
	recs := history(t, hs[0], "tick")
	local := localRuns(t, hs, "tick")
	if len(recs) < n {
		t.Fatalf("%d fleet records, want at least %d", len(recs), n)
	}
	total, ran := 0, 0
	for _, rs := range local {
		total += len(rs)
	}
	for _, r := range recs {
		if r.Status != string(jobs.StatusSkipped) { // claimed as the hosts stopped
			ran++
		}
	}
	// N runs in total, not 3N: every scheduled time ran on one host.
	if total != ran {
		t.Errorf("%d runs on the hosts for %d scheduled times run in the fleet's history", total, ran)
	}
	seen := map[time.Time]bool{}
	for _, r := range recs {
		at := r.Scheduled.UTC()
		if seen[at] {
			t.Errorf("time %s twice in the fleet's history", at)
		}
		seen[at] = true
		if r.Status == string(jobs.StatusSkipped) {
			continue
		}
		if at.Truncate(10*time.Second) != at {
			t.Errorf("scheduled time %s not on the @every 10s grid", at)
		}
		rs := local[at]
		if len(rs) != 1 {
			t.Errorf("time %s ran %d times on the hosts: %+v", at, len(rs), rs)
			continue
		}
		lr := rs[0]
		if r.Host == "" || lr.Host != r.Host || lr.FenceToken != r.Token || lr.ID != r.RunID || string(lr.Status) != r.Status {
			t.Errorf("fleet record %+v does not match the host's run %+v", r, lr)
		}
		if r.Token == 0 {
			t.Errorf("record %+v without a fencing token", r)
		}
	}
	// The run's container got its fencing token.
	for _, h := range hs {
		rs, _ := h.s.Store.Runs("tick")
		for _, r := range rs {
			if r.Status != jobs.StatusSucceeded {
				continue
			}
			out, _, _ := h.s.Store.Output("tick", r.ID)
			sum := sha256.Sum256(fmt.Append(nil, r.FenceToken))
			if want := "testapp env BERTH_FENCE_TOKEN set sha256=" + hex.EncodeToString(sum[:8]); !strings.Contains(string(out), want) {
				t.Errorf("%s run %s output %q, want %q", h.name, r.ID, out, want)
			}
		}
	}
	// Every host shows the fleet's runs, each naming its host.
	for _, h := range hs[1:] {
		other := history(t, h, "tick")
		if len(other) != len(recs) {
			t.Errorf("%s shows %d records, %s %d", h.name, len(other), hs[0].name, len(recs))
		}
		for i := range min(len(other), len(recs)) {
			if other[i].Host != recs[i].Host || !other[i].Scheduled.Equal(recs[i].Scheduled) {
				t.Errorf("%s record %d %+v, %s has %+v", h.name, i, other[i], hs[0].name, recs[i])
			}
		}
	}
	t.Logf("fleet history: %d runs, by host: %v", len(recs), byHost(recs))
}

func byHost(recs []fleet.JobRecord) map[string]int {
	m := map[string]int{}
	for _, r := range recs {
		m[r.Host]++
	}
	return m
}

// The host running a scheduled time dies (its lease goes): no other host
// runs that time again; the fleet's record shows it lost, and the next
// times run, once each, on the hosts left.
func TestDocker_FleetJobRunnerLeaseLost_NoSecondRun(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	hs := fleetHosts(t, etcd, 3, `
    long:
      schedule: "@every 5s"
      service: web
      environment: {APP_SLEEP: 7s}
`)
	var runner *fleetHost
	var at time.Time
	waitFleet(t, 2*time.Minute, "a run of the job", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		act, err := hs[0].f.Active(ctx, "", "long")
		if err != nil || len(act) == 0 {
			return false
		}
		for _, h := range hs {
			if h.name == act[0].Host {
				runner, at = h, act[0].Scheduled.UTC()
			}
		}
		return runner != nil
	})
	// Kill the runner: its lease goes at once (as after its TTL), and it
	// writes nothing more.
	runner.c.Close()
	runner.stop()
	var rest []*fleetHost
	for _, h := range hs {
		if h != runner {
			rest = append(rest, h)
		}
	}
	waitFleet(t, 2*time.Minute, "two later times finished by the other hosts", func() bool {
		n := 0
		for _, r := range history(t, rest[0], "long") {
			if r.Scheduled.After(at) && r.Status != fleet.JobRunning && r.Status != fleet.JobLost {
				n++
			}
		}
		return n >= 2
	})
	for _, h := range rest {
		h.stop()
	}
	recs := history(t, rest[0], "long")
	found := false
	for _, r := range recs {
		if r.Scheduled.UTC().Equal(at) {
			found = true
			if r.Host != runner.name || r.Status != fleet.JobLost {
				t.Errorf("record of the dead runner's time: %+v, want lost on %s", r, runner.name)
			}
		}
	}
	if !found {
		t.Errorf("no record of %s in %+v", at, recs)
	}
	for tm, rs := range localRuns(t, rest, "long") {
		if tm.Equal(at) {
			t.Errorf("the dead runner's time %s ran again: %+v", at, rs)
		}
		if len(rs) > 1 {
			t.Errorf("time %s ran %d times", tm, len(rs))
		}
	}
}

// etcd stops: a run_on: one job's scheduled times are recorded as skipped,
// waiting for etcd, never run; a run_on: all job keeps running on every
// host. When etcd is back, the run_on: one job runs again, once per time.
func TestDocker_FleetJobsWhileEtcdIsDown(t *testing.T) {
	etcd := testenv.StartEtcd(t)
	hs := fleetHosts(t, etcd, 3, `
    one:
      schedule: "@every 5s"
      service: web
      starting_deadline: 2s
    every:
      schedule: "@every 5s"
      service: web
      run_on: all
`)
	waitFleet(t, 2*time.Minute, "a run of the run_on: one job", func() bool {
		return doneCount(history(t, hs[0], "one")) >= 1
	})
	etcd.Stop()
	down := time.Now()
	waitFleet(t, 2*time.Minute, "a scheduled time skipped waiting for etcd, and runs of the run_on: all job on every host", func() bool {
		skipped := false
		for _, h := range hs {
			rs, _ := h.s.Store.Runs("one")
			for _, r := range rs {
				if r.Status == jobs.StatusSkipped && strings.Contains(r.Reason, "waiting for etcd") {
					skipped = true
				}
			}
			rs, _ = h.s.Store.Runs("every")
			ran := false
			for _, r := range rs {
				if r.Started.After(down) && r.Done() {
					ran = true
				}
			}
			if !ran {
				return false
			}
		}
		return skipped
	})
	for tm, rs := range localRuns(t, hs, "one") {
		for _, r := range rs {
			if r.Started.After(down) {
				t.Errorf("run_on: one job ran while etcd was down: %s %+v", tm, r)
			}
		}
	}
	etcd.Start()
	etcd.WaitHealthy(t, 30*time.Second)
	up := time.Now()
	waitFleet(t, 2*time.Minute, "two runs of the run_on: one job after etcd is back", func() bool {
		n := 0
		for _, r := range history(t, hs[0], "one") {
			if r.Scheduled.After(up) && r.Status == fleet.JobSucceeded {
				n++
			}
		}
		return n >= 2
	})
	for _, h := range hs {
		h.stop()
	}
	for tm, rs := range localRuns(t, hs, "one") {
		if len(rs) > 1 {
			t.Errorf("time %s ran %d times: %+v", tm, len(rs), rs)
		}
	}
}
