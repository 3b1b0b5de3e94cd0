package fleet

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/internal/failure"
	"berth.dev/berth/internal/testenv"
)

// BenchmarkFleet measures what a fleet costs etcd and how long a rollout
// takes: N simulated agents (default 1,000; BERTH_FLEET_BENCH_AGENTS),
// each with its own client, session (lease TTL 15 s, the default), host
// record and control watch, against one etcd process: Debian's 3.4
// (default) or the 3.7 server of the client's own release
// (BERTH_FLEET_BENCH_SERVER=3.7, run in a child process). Reported: etcd's
// idle requests/s, puts/s, watchers and resident memory (from its
// /metrics), and the time of a rollout over every agent with
// max_parallel 10 % and each deploy stubbed to 1 s. Results go to
// docs/benchmarks.md ("Fleets").
//
//	go test -run '^$' -bench Fleet -benchtime 1x -timeout 30m ./fleet/
func BenchmarkFleet(b *testing.B) {
	n := 1000
	if s := os.Getenv("BERTH_FLEET_BENCH_AGENTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	endpoint, metrics := benchServer(b)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	as := make([]*agent, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a := benchAgent(b, endpoint, fmt.Sprintf("host-%04d", i))
			a.Publish("prod", HostState{Live: &Commit{Revision: "r0", Author: "Ada", Subject: "first"}, Version: "bench"})
			go func() {
				for range a.WatchControl(ctx, "prod") {
				}
			}()
			as[i] = a
		}()
	}
	wg.Wait()
	waitFor(b, 5*time.Minute, "every agent listed", func() bool {
		hs, err := as[0].List(ctx, "prod")
		return err == nil && len(hs) == n
	})
	b.Logf("%d agents up in %s", n, time.Since(start).Round(time.Millisecond))
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)

	// Idle: what etcd sees from agents that have nothing to do.
	time.Sleep(10 * time.Second) // past the first keepalives
	m0, t0 := scrape(b, metrics), time.Now()
	time.Sleep(30 * time.Second)
	m1, t1 := scrape(b, metrics), time.Now()
	secs := t1.Sub(t0).Seconds()
	reqs := (sum(m1, "grpc_server_msg_received_total") - sum(m0, "grpc_server_msg_received_total")) / secs
	puts := (sumAny(m1, "etcd_mvcc_put_total", "etcd_debugging_mvcc_put_total") - sumAny(m0, "etcd_mvcc_put_total", "etcd_debugging_mvcc_put_total")) / secs
	watchers := sumAny(m1, "etcd_debugging_mvcc_watcher_total")
	streams := sumAny(m1, "etcd_debugging_mvcc_watch_stream_total")
	rss := sum(m1, "process_resident_memory_bytes") / (1 << 20)
	b.Logf("idle over %.0f s: %.0f requests/s (stream messages included), %.1f puts/s, %.0f watchers on %.0f streams, etcd RSS %.0f MiB, db %.1f MiB",
		secs, reqs, puts, watchers, streams, rss, sumAny(m1, "etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_db_total_size_in_bytes")/(1<<20))

	// The floor under any coordination: every agent reading one key, and
	// writing one, at the same moment.
	for _, op := range []string{"read", "write"} {
		t0 := time.Now()
		var wg sync.WaitGroup
		for _, a := range as {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if op == "read" {
					_, err = a.get(ctx, "/berth/prod/probe")
				} else {
					_, err = a.txn(ctx, "probe", nil, []clientv3.Op{clientv3.OpPut("/berth/prod/probe/"+a.Host(), "x")})
				}
				if err != nil {
					b.Errorf("%s: %s: %v", a.Host(), op, err)
				}
			}()
		}
		wg.Wait()
		b.Logf("%d agents each %s one key at once: %s", n, map[string]string{"read": "reading", "write": "writing"}[op], time.Since(t0).Round(time.Millisecond))
	}

	// A rollout over every host: max_parallel 10 %, 1 s deploys.
	b.ResetTimer()
	for i := range b.N {
		rev := fmt.Sprintf("r%d", i+1)
		if os.Getenv("BERTH_FLEET_BENCH_PRECREATE") != "" {
			sess, _ := as[0].Session(ctx)
			if _, err := as[0].wave(ctx, "prod", sess, RolloutRequest{Revision: rev, Policy: Policy{MaxParallel: "10%"}}, 0, nil); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		var mu sync.Mutex
		var spans []span
		var retries atomic.Int32
		var wg sync.WaitGroup
		steps := map[string][]time.Duration{}
		for _, a := range as {
			f := func(step string) {
				mu.Lock()
				steps[step] = append(steps[step], time.Since(t0))
				mu.Unlock()
			}
			a.trace.Store(&f)
		}
		for _, a := range as {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var adm *Admission
				var err error
				for { // an outage (a timeout) is retried, as the agent's pass does
					adm, err = a.Admit(ctx, "prod", RolloutRequest{Revision: rev, Policy: Policy{MaxParallel: "10%"}, Live: "r0"})
					if !failure.IsOutage(err) {
						break
					}
					if retries.Add(1) <= 3 {
						b.Logf("%s: retrying after: %v", a.Host(), err)
					}
					time.Sleep(time.Second)
				}
				if err != nil {
					b.Errorf("%s: %v", a.Host(), err)
					return
				}
				s := span{host: a.Host(), enter: time.Now()}
				time.Sleep(time.Second)
				s.exit = time.Now()
				if err := adm.Finish(ctx, Succeeded, ""); err != nil {
					b.Errorf("%s: %v", a.Host(), err)
				}
				mu.Lock()
				spans = append(spans, s)
				mu.Unlock()
			}()
		}
		stuck := time.AfterFunc(2*time.Minute, func() { dumpSlots(b, as[0].Client) })
		wg.Wait()
		stuck.Stop()
		d := time.Since(t0)
		b.ReportMetric(d.Seconds(), "rollout-s")
		// When each tenth of the fleet had started: the gaps show where
		// the time goes (the floor is one deploy per wave).
		enters := make([]time.Duration, 0, len(spans))
		for _, s := range spans {
			enters = append(enters, s.enter.Sub(t0))
		}
		slices.Sort(enters)
		var marks []string
		for i := len(enters) / 10; i <= len(enters) && i > 0; i += len(enters) / 10 {
			marks = append(marks, enters[i-1].Round(10*time.Millisecond).String())
		}
		b.Logf("started by: %s", strings.Join(marks, " "))
		var stepLines []string
		for _, st := range slices.Sorted(maps.Keys(steps)) {
			ds := steps[st]
			slices.Sort(ds)
			stepLines = append(stepLines, fmt.Sprintf("%s %d: median %s, 90th %s, last %s", st, len(ds), ds[len(ds)/2].Round(10*time.Millisecond),
				ds[len(ds)*9/10].Round(10*time.Millisecond), ds[len(ds)-1].Round(10*time.Millisecond)))
		}
		b.Logf("steps (count: times from the start): %s", strings.Join(stepLines, "; "))
		if len(enters) > 0 {
			per := map[int]int{}
			last := 0
			for _, e := range enters {
				i := int(e / (500 * time.Millisecond))
				per[i]++
				last = max(last, i)
			}
			var buckets []string
			for i := 0; i <= last; i++ {
				buckets = append(buckets, strconv.Itoa(per[i]))
			}
			b.Logf("starts per half second: %s", strings.Join(buckets, " "))
		}
		b.Logf("rollout of %s over %d hosts, max_parallel 10%%, 1 s deploys: %s (max %d at once; %d Admit calls retried after a timeout)",
			rev, n, d.Round(10*time.Millisecond), maxOverlap(spans), retries.Load())
	}
	b.StopTimer()
	b.ReportMetric(reqs, "idle-req/s")
	b.ReportMetric(puts, "idle-puts/s")
	b.ReportMetric(watchers, "watchers")
	b.ReportMetric(streams, "watch-streams")
	b.ReportMetric(rss, "etcd-RSS-MiB")
	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(n)/1024, "agent-heap-KiB")
	m2 := scrape(b, metrics)
	b.Logf("etcd after the rollout: RSS %.0f MiB, db %.1f MiB", sum(m2, "process_resident_memory_bytes")/(1<<20),
		sumAny(m2, "etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_db_total_size_in_bytes")/(1<<20))
}

// benchAgent is an agent with the default lease TTL and no logging.
func benchAgent(b *testing.B, endpoint, host string) *agent {
	c, err := New(Config{Etcd: EtcdConfig{Endpoints: []string{endpoint}}, Host: host},
		Options{Log: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{Client: c, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(a.done); c.Run(ctx) }()
	b.Cleanup(a.close)
	return a
}

// BenchmarkFleetAgentRSS is what the fleet client adds to an idle agent's
// resident memory: a process with a client running (session, host record,
// control watch) against one without, both this test binary, after 20 s.
//
//	go test -run '^$' -bench FleetAgentRSS -benchtime 1x ./fleet/
func BenchmarkFleetAgentRSS(b *testing.B) {
	etcd := testenv.StartEtcd(b)
	rss := func(role string) float64 {
		cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), "FLEET_HELPER="+role, "FLEET_HOST=web-1", "FLEET_EPS="+etcd.ClientURL, "FLEET_TTL=15s",
			"GOMAXPROCS=2")
		out, _ := cmd.StdoutPipe()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		buf := make([]byte, 6)
		_, _ = io.ReadFull(out, buf)
		time.Sleep(20 * time.Second)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
		b.Fatal("no VmRSS")
		return 0
	}
	for range b.N {
		none, with := rss("idle-none"), rss("idle-fleet")
		b.ReportMetric(with-none, "fleet-RSS-MiB")
		b.Logf("idle process RSS: %.1f MiB without a fleet client, %.1f MiB with one (+%.1f MiB)", none, with, with-none)
	}
}
