package chaos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
)

const root = "/berth/prod/"

var t0 = time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)

func at(d time.Duration) int64 { return t0.Add(d).UnixNano() }

func input(events ...Event) Input {
	evs := append([]Event{{At: at(0), Host: "harness", Kind: "faults_begin"}}, events...)
	evs = append(evs, Event{At: at(50 * time.Second), Host: "harness", Kind: "faults_end"})
	return Input{Events: evs, FinalAt: t0.Add(60 * time.Second), Root: root, TTL: 3 * time.Second, Timeout: time.Second,
		MaxParallel: 1, KeepRollouts: 4, KeepMigrations: 4}
}

// probes are the harness's samples of etcd's revision, every half second
// from from to to (excluded), all at revision rev.
func probes(from, to time.Duration, rev int64) []Event {
	var out []Event
	for d := from; d < to; d += 500 * time.Millisecond {
		out = append(out, Event{At: at(d), Host: "harness", Kind: "etcd_rev", Token: rev})
	}
	return out
}

func props(r *Result) string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, v.Property)
	}
	return strings.Join(out, "; ")
}

func put(rev int64, key string, v any) Change {
	b, _ := json.Marshal(v)
	return Change{Rev: rev, Key: key, Put: true, Value: b, Create: rev}
}

// Each property, from a ledger and a history made by hand.
func TestCheck_EachPropertyFromAHandMadeRun(t *testing.T) {
	job := JobSpec{Name: "backup", Every: 10 * time.Second, History: 5}
	for name, tc := range map[string]struct {
		in   Input
		want string
	}{
		"a job time run twice": {in: func() Input {
			in := input(Event{At: at(time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(0), Token: 5},
				Event{At: at(2 * time.Second), Host: "web-2", Kind: "job_start", Job: "backup", T: at(0), Token: 7})
			return in
		}(), want: "job time ran twice"},
		"an uncovered job time not run": {in: func() Input {
			in := input(Event{At: at(10 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(10 * time.Second), Token: 5},
				Event{At: at(30 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(30 * time.Second), Token: 9},
				Event{At: at(40 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(40 * time.Second), Token: 11})
			in.Jobs = []JobSpec{job}
			return in
		}(), want: "job time not run"},
		"a job time not run while etcd answered not even the harness's probe is covered": {in: func() Input {
			in := input(append(append(probes(0, 19*time.Second, 4), probes(23*time.Second, 50*time.Second, 8)...),
				Event{At: at(10 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(10 * time.Second), Token: 5},
				Event{At: at(30 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(30 * time.Second), Token: 9},
				Event{At: at(40 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(40 * time.Second), Token: 11})...)
			in.Jobs = []JobSpec{job}
			return in
		}(), want: ""},
		"two times skipped by forbid, each for the other's run": {in: func() Input {
			in := input(Event{At: at(10 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(10 * time.Second), Token: 5},
				Event{At: at(31 * time.Second), Host: "web-2", Kind: "job_skip", Job: "backup", T: at(20 * time.Second), Token: 7, Forbid: true,
					Note: "the run of " + t0.Add(30*time.Second).Format(time.RFC3339Nano) + " on host web-3 is still running (concurrency: forbid)"},
				Event{At: at(31 * time.Second), Host: "web-3", Kind: "job_skip", Job: "backup", T: at(30 * time.Second), Token: 8, Forbid: true,
					Note: "the run of " + t0.Add(20*time.Second).Format(time.RFC3339Nano) + " on host web-2 is still running (concurrency: forbid)"},
				Event{At: at(40 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(40 * time.Second), Token: 11})
			in.Jobs = []JobSpec{job}
			return in
		}(), want: "job time not run; job time not run"},
		"a time skipped by forbid for a run whose host was cut off is fine": {in: func() Input {
			in := input(Event{At: at(10 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(10 * time.Second), Token: 5},
				Event{At: at(19 * time.Second), Host: "harness", Kind: "fault_start", Outcome: FaultHold, Target: "web-2"},
				Event{At: at(29 * time.Second), Host: "harness", Kind: "fault_end", Outcome: FaultHold, Target: "web-2"},
				Event{At: at(30 * time.Second), Host: "web-3", Kind: "job_skip", Job: "backup", T: at(30 * time.Second), Token: 8, Forbid: true,
					Note: "the run of " + t0.Add(20*time.Second).Format(time.RFC3339Nano) + " on host web-2 is still running (concurrency: forbid)"},
				Event{At: at(40 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(40 * time.Second), Token: 11})
			in.Jobs = []JobSpec{job}
			// web-2's claim of 20 s landed; its reply was held back.
			in.History = []Change{put(7, root+"job/backup/run/"+t0.Add(20*time.Second).Format(timeKeyLayout), fleet.JobRecord{Host: "web-2"})}
			return in
		}(), want: ""},
		"a covered job time not run is fine": {in: func() Input {
			in := input(Event{At: at(10 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(10 * time.Second), Token: 5},
				Event{At: at(19 * time.Second), Host: "harness", Kind: "fault_start", Outcome: FaultOutage, Target: "all"},
				Event{At: at(21 * time.Second), Host: "harness", Kind: "fault_end", Outcome: FaultOutage, Target: "all"},
				Event{At: at(30 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(30 * time.Second), Token: 9},
				Event{At: at(40 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: at(40 * time.Second), Token: 11})
			in.Jobs = []JobSpec{job}
			return in
		}(), want: ""},
		"a non-idempotent migration run twice": {in: input(
			Event{At: at(time.Second), Host: "web-1", Kind: "migrate_start", Mig: "m1", Token: 5},
			Event{At: at(9 * time.Second), Host: "web-2", Kind: "migrate_start", Mig: "m1", Token: 9}), want: "migration ran twice"},
		"an idempotent migration taken over while its result waited": {in: func() Input {
			in := input(Event{At: at(time.Second), Host: "web-1", Kind: "migrate_start", Mig: "m1", Token: 5, Idem: true},
				Event{At: at(2 * time.Second), Host: "web-1", Kind: "migrate_end", Mig: "m1", Token: 5, OK: true},
				Event{At: at(9 * time.Second), Host: "web-2", Kind: "migrate_start", Mig: "m1", Token: 9, Idem: true})
			in.History = []Change{
				put(5, root+"migrate/m1/lock/a", "web-1"),
				{Rev: 8, Key: root + "migrate/m1/lock/a"},
				put(9, root+"migrate/m1/lock/b", "web-2"),
				put(10, root+"migrate/m1/state", fleet.MigrationState{Status: fleet.MigrationRunning, Token: 9}),
			}
			return in
		}(), want: "migration ran twice"},
		"max_parallel exceeded by a joiner": {in: input(
			Event{At: at(time.Second), Host: "web-1", Pid: 1, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(2 * time.Second), Host: "web-9", Pid: 2, Kind: "deploy_start", Rev: "r1", Joining: true, Slot: -1},
			Event{At: at(3 * time.Second), Host: "web-1", Pid: 1, Kind: "deploy_end", Rev: "r2"},
			Event{At: at(4 * time.Second), Host: "web-9", Pid: 2, Kind: "deploy_end", Rev: "r1"}), want: "max_parallel exceeded"},
		"a lease lost mid-deploy is the documented exception": {in: input(
			Event{At: at(time.Second), Host: "web-1", Pid: 1, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(12 * time.Second), Host: "web-1", Pid: 1, Kind: "session_lost"},
			Event{At: at(9 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(10 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_end", Rev: "r2"},
			Event{At: at(13 * time.Second), Host: "web-1", Pid: 1, Kind: "deploy_end", Rev: "r2"}), want: ""},
		"a lease lost in a pause, noticed just after the deploy's end, is the documented exception": {in: input(
			Event{At: at(time.Second), Host: "web-1", Pid: 1, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(6 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(9 * time.Second), Host: "web-1", Pid: 1, Kind: "deploy_end", Rev: "r2"},
			Event{At: at(9*time.Second + time.Millisecond), Host: "web-1", Pid: 1, Kind: "session_lost"},
			Event{At: at(10 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_end", Rev: "r2"}), want: ""},
		"a lease lost long after the deploy's end excuses nothing": {in: input(
			Event{At: at(time.Second), Host: "web-1", Pid: 1, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(5 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(9 * time.Second), Host: "web-1", Pid: 1, Kind: "deploy_end", Rev: "r2"},
			Event{At: at(10 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_end", Rev: "r2"},
			Event{At: at(30 * time.Second), Host: "web-1", Pid: 1, Kind: "session_lost"}), want: "max_parallel exceeded"},
		"a loss after a new session excuses nothing": {in: input(
			Event{At: at(time.Second), Host: "web-1", Pid: 1, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(5 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_start", Rev: "r2", Slot: 0},
			Event{At: at(9 * time.Second), Host: "web-1", Pid: 1, Kind: "deploy_end", Rev: "r2"},
			Event{At: at(9*time.Second + time.Millisecond), Host: "web-1", Pid: 1, Kind: "session"},
			Event{At: at(9*time.Second + 2*time.Millisecond), Host: "web-1", Pid: 1, Kind: "session_lost"},
			Event{At: at(10 * time.Second), Host: "web-2", Pid: 2, Kind: "deploy_end", Rev: "r2"}), want: "max_parallel exceeded"},
		"a halted revision started": {in: func() Input {
			in := input(Event{At: at(time.Second), Host: "web-1", Kind: "deploy_start", Rev: "r2", AdmRev: 12},
				Event{At: at(2 * time.Second), Host: "web-1", Kind: "deploy_end", Rev: "r2"})
			in.History = []Change{put(11, root+"halt/r2", fleet.Halt{Revision: "r2"})}
			return in
		}(), want: "halted revision started"},
		"an active job key with no run": {in: func() Input {
			in := input()
			in.Final = map[string]KV{root + "job/backup/active/x": {Key: root + "job/backup/active/x", Value: []byte("web-1"), Create: 40}}
			return in
		}(), want: "running with no run behind it"},
		"a job's active mark with no run, alive long after every fault": {in: func() Input {
			in := input(append(probes(time.Second, 40*time.Second, 10),
				Event{At: at(40 * time.Second), Host: "harness", Kind: "etcd_rev", Token: 20})...)
			key := root + "job/backup/active/" + t0.Format(timeKeyLayout)
			in.History = []Change{{Rev: 10, Key: key, Put: true, Value: []byte("web-1"), Create: 10}, {Rev: 21, Key: key}}
			return in
		}(), want: "running with no run behind it"},
		"a job's active mark with its run": {in: func() Input {
			in := input(Event{At: at(time.Second), Host: "harness", Kind: "etcd_rev", Token: 10},
				Event{At: at(2 * time.Second), Host: "web-1", Kind: "job_start", Job: "backup", T: t0.UnixNano(), Token: 10},
				Event{At: at(40 * time.Second), Host: "harness", Kind: "etcd_rev", Token: 20})
			key := root + "job/backup/active/" + t0.Format(timeKeyLayout)
			in.History = []Change{{Rev: 10, Key: key, Put: true, Value: []byte("web-1"), Create: 10}, {Rev: 21, Key: key}}
			return in
		}(), want: ""},
		"the key budget": {in: func() Input {
			in := input(Event{At: at(0), Host: "web-1", Kind: "start"})
			for i := range 300 {
				in.History = append(in.History, put(int64(i+1), root+"rollout/r"+string(rune('a'+i%26))+string(rune('a'+i/26)), "x"))
			}
			return in
		}(), want: "key budget exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.in.Events = sortEvents(tc.in.Events)
			if got := props(Check(tc.in)); got != tc.want {
				t.Fatalf("violations %q, want %q", got, tc.want)
			}
		})
	}
}

func sortEvents(es []Event) []Event {
	for i := range es {
		for j := i + 1; j < len(es); j++ {
			if es[j].At < es[i].At {
				es[i], es[j] = es[j], es[i]
			}
		}
	}
	return es
}
