package ui

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/fleet"
	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
)

// The page's targets (docs/benchmarks.md): served in ≤ 50 ms with 500
// deploys in the journal, and for a fleet of 1,000 hosts. Each reports
// the page's size.

// bigHost is one env with 500 deploy records (every tenth rolled back,
// every third a run of quiet passes), 8 services of 2 containers, and 10
// jobs of 100 runs each.
func bigHost(b *testing.B) *Server {
	e := newTestEnv(b, "prod")
	for i := range 500 {
		id := fmt.Sprintf("20261206T%06d.000Z-0001", i)
		r := deployRecord(id, fmt.Sprintf("%040x", i), fmt.Sprintf("release %d: a subject of usual length", i), t0.Add(time.Duration(i)*time.Minute))
		switch {
		case i%10 == 0:
			r = rolledBack(id, r.Commit, r.Started)
		case i%3 == 0:
			r.Result, r.Changed, r.Phases, r.Done, r.Passes = reconcile.ResultUnchanged, false, nil, nil, 40
		}
		e.write(b, r)
	}
	e.state(b, reconcile.State{Live: &reconcile.RevisionState{Commit: fmt.Sprintf("%040x", 499), DeployID: "20261206T000499.000Z-0001", At: t0}})
	var listing jobs.Listing
	for j := range 10 {
		name := fmt.Sprintf("job-%d", j)
		listing.Jobs = append(listing.Jobs, jobs.Entry{Name: name, Schedule: "*/5 * * * *", Next: t0})
		for k := range 100 {
			exit := k % 7
			st := jobs.StatusSucceeded
			if exit != 0 {
				st = jobs.StatusFailed
			}
			r := jobs.Run{ID: fmt.Sprintf("20261206T%06d.000Z-0001", k), Job: name, Started: t0, Finished: t0.Add(time.Second), Status: st, ExitCode: &exit}
			if err := e.Jobs.Save(&r); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := e.Jobs.SaveListing(&listing); err != nil {
		b.Fatal(err)
	}
	var cs []engine.Managed
	for i := range 8 {
		for slot := range 2 {
			cs = append(cs, engine.Managed{Name: fmt.Sprintf("prod-svc%d-%d", i, slot), Service: fmt.Sprintf("svc%d", i), Role: "server", Slot: slot,
				Revision: fmt.Sprintf("%040x", 499), State: "running", Health: "healthy", Ports: []string{"127.0.0.1:32770->8080/tcp"}})
		}
	}
	return &Server{Local: &Local{Host: "web-1", Envs: []LocalEnv{e.LocalEnv}, Containers: fakeContainers(cs...)}}
}

// bigFleet is one env of 1,000 hosts mid-rollout: 10 rollouts, 20 jobs
// of 100 runs.
func bigFleet() *fakeFleet {
	o := fleet.Overview{Env: "prod", Good: &fleet.Good{Revision: "r8", At: t0}}
	c := []*fleet.Commit{{Revision: fmt.Sprintf("%040x", 8), Author: "Ada", Subject: "release 8"}, {Revision: fmt.Sprintf("%040x", 9), Author: "Ada", Subject: "release 9"}}
	for i := range 1000 {
		h := fleet.HostStatus{HostState: fleet.HostState{Host: fmt.Sprintf("web-%04d", i), Live: c[i%2], Version: "1.0",
			Health: map[string]string{"web": "healthy", "worker": "healthy"}, Clock: t0}, Alive: i%50 != 0, LastSeen: t0}
		if i%7 == 0 {
			h.Deploy = &fleet.Deploy{Revision: c[1].Revision, Phase: "servers", Started: t0}
		}
		o.Hosts = append(o.Hosts, h)
	}
	for r := range 10 {
		w := fleet.RolloutState{Wave: fleet.Wave{Revision: fmt.Sprintf("%040x", r), Canaries: []string{"web-0001"}, MaxParallel: 100, Created: t0}}
		for i := range 1000 {
			w.Known = append(w.Known, fmt.Sprintf("web-%04d", i))
			if r < 9 || i%2 == 0 {
				w.Done = append(w.Done, fleet.HostResult{Host: fmt.Sprintf("web-%04d", i), OK: true, At: t0.Add(time.Duration(i) * time.Second)})
			}
		}
		o.Rollouts = append(o.Rollouts, w)
	}
	for j := range 20 {
		jh := fleet.JobHistory{Job: fmt.Sprintf("job-%d", j)}
		for k := range 100 {
			jh.Runs = append(jh.Runs, fleet.JobRecord{Job: jh.Job, Host: fmt.Sprintf("web-%04d", k), Status: fleet.JobSucceeded, Scheduled: t0, Started: t0, Ended: t0.Add(time.Second)})
		}
		o.Jobs = append(o.Jobs, jh)
	}
	return &fakeFleet{envs: []fleet.Overview{o}}
}

func benchPage(b *testing.B, h http.Handler, path string) {
	b.Helper()
	size := 0
	serve := func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d", path, rec.Code)
		}
		size = rec.Body.Len()
	}
	serve() // the first request parses the templates and fills the cache
	before := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		serve()
	}
	b.ReportMetric(float64(size), "B/page")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
	// The process's CPU time per page: what the page costs whatever else
	// the machine runs (the wall time above grows with its load).
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N)/1000, "cpu-ms/page")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkHostPage_500Deploys(b *testing.B) {
	benchPage(b, bigHost(b).Handler(), "/")
}

func BenchmarkHistoryPage_500DeploysFiltered(b *testing.B) {
	benchPage(b, bigHost(b).Handler(), "/history?env=prod&q=release+4&page=2")
}

func BenchmarkFleetPage_1000Hosts(b *testing.B) {
	s := &Server{Fleet: &Fleet{Reader: bigFleet()}}
	// Past the snapshot's reuse: every request reads and builds anew.
	now := t0
	s.Now = func() time.Time { now = now.Add(time.Hour); return now }
	benchPage(b, s.Handler(), "/")
}

// The first request of an agent's life: the templates parsed, the
// journal's 500 records read and decoded.
func BenchmarkHostPage_500DeploysFirstRequest(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		s := bigHost(b)
		h := s.Handler()
		b.StartTimer()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil))
	}
}
