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
			in := input(Event{At: at(time.Second), Host: "harness", Kind: "etcd_rev", Token: 10},
				Event{At: at(40 * time.Second), Host: "harness", Kind: "etcd_rev", Token: 20})
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
