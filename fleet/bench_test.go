package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

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
			if _, err := as[0].wave(ctx, "prod", sess, RolloutRequest{Revision: rev, Policy: Policy{MaxParallel: "10%"}}); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		var mu sync.Mutex
		var spans []span
		var retries atomic.Int32
		var wg sync.WaitGroup
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

// benchServer starts the etcd under test as its own process and returns
// its client URL and metrics URL.
func benchServer(b *testing.B) (string, string) {
	if os.Getenv("BERTH_FLEET_BENCH_SERVER") != "3.7" {
		e := testenv.StartEtcd(b)
		st, _ := e.Status()
		if st != nil {
			b.Logf("etcd %s (process)", st.Version)
		}
		return e.ClientURL, e.ClientURL + "/metrics"
	}
	dir := b.TempDir()
	cu := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	pu := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), "FLEET_HELPER=etcd", "FLEET_ETCD_DIR="+dir, "FLEET_ETCD_CLIENT="+cu, "FLEET_ETCD_PEER="+pu)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(b, 30*time.Second, "etcd 3.7 child healthy", func() bool {
		resp, err := http.Get(cu + "/health")
		if err != nil {
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(body), `"health":"true"`)
	})
	b.Logf("etcd 3.7 (embed, child process)")
	return cu, cu + "/metrics"
}

// embeddedEtcdMain is the "etcd" helper role: etcd's own server (this
// module's v3.7) as a process.
func embeddedEtcdMain() int {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "bench", os.Getenv("FLEET_ETCD_DIR")
	cu, _ := url.Parse(os.Getenv("FLEET_ETCD_CLIENT"))
	pu, _ := url.Parse(os.Getenv("FLEET_ETCD_PEER"))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-e.Server.ReadyNotify()
	<-e.Err()
	return 0
}

func scrape(b *testing.B, u string) map[string]*dto.MetricFamily {
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return mf
}

// sum adds every sample of a counter or gauge family.
func sum(mf map[string]*dto.MetricFamily, name string) float64 {
	f := mf[name]
	if f == nil {
		return 0
	}
	var s float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			s += m.Counter.GetValue()
		case m.Gauge != nil:
			s += m.Gauge.GetValue()
		case m.Untyped != nil:
			s += m.Untyped.GetValue()
		}
	}
	return s
}

// sumAny is sum of the first family present (names moved across etcd
// releases).
func sumAny(mf map[string]*dto.MetricFamily, names ...string) float64 {
	for _, n := range names {
		if mf[n] != nil {
			return sum(mf, n)
		}
	}
	return 0
}

// dumpSlots logs the queue and the slots of a rollout that seems stuck.
func dumpSlots(b *testing.B, c *Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k := c.keys("prod")
	for _, p := range []string{k.slots(), k.queue()} {
		resp, err := c.get(ctx, p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
		if err != nil {
			fmt.Fprintf(os.Stderr, "stuck? %s: %v\n", p, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "stuck? %s: %d keys at revision %d\n", p, len(resp.Kvs), resp.Header.Revision)
		for i, kv := range resp.Kvs {
			if i < 12 {
				fmt.Fprintf(os.Stderr, "  %s = %s (create %d, lease %x)\n", kv.Key, kv.Value, kv.CreateRevision, kv.Lease)
			}
		}
	}
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
