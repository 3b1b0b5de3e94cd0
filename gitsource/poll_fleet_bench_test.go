package gitsource

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/testenv"
)

// BenchmarkFleetPoll is the Git server's load when a fleet's agents poll
// one config repository (docs/benchmarks.md, "Fleets"): 1,000 berth
// pollers (Poller and Source.Head, the ref listing each poll makes) against
// the test Git server over smart HTTP, all started at the same instant as
// after a fleet-wide restart. It reports the requests per second arriving
// at the server: the mean over the run and the busiest second, and their
// ratio. "lockstep" is the poller without a start phase (each agent polls
// at once, then every interval ±10 %); "phased" starts each agent at a
// random point of its first interval (Poller.Phase, what the agent does).
// The interval is the agent's default, 60 s: on the 2-core test machine a
// shorter one saturates the CGI Git server (git http-backend, one process
// per request), whose queue then paces the polls instead of the pollers.
// The per-poll latency is reported to show it was not saturated.
//
//	go test -run '^$' -bench FleetPoll -benchtime 1x ./gitsource
//
// BERTH_BENCH_AGENTS and BERTH_BENCH_POLL_INTERVAL change the fleet.
func BenchmarkFleetPoll(b *testing.B) {
	agents := 1000
	if v, err := strconv.Atoi(os.Getenv("BERTH_BENCH_AGENTS")); err == nil && v > 0 {
		agents = v
	}
	interval := 60 * time.Second
	if v, err := time.ParseDuration(os.Getenv("BERTH_BENCH_POLL_INTERVAL")); err == nil && v > 0 {
		interval = v
	}
	g := testenv.StartGitServer(b)
	repo := g.NewRepo(b, "config")
	repo.CommitFiles(b, "an env", map[string]string{"envs/prod/compose.yaml": "services:\n  web: {image: nginx}\n"})
	// One Source serves every simulated agent: a poll lists the refs into
	// fresh memory storage and keeps nothing, so agents share nothing
	// else but the HTTP client's connection pool.
	src, err := New(Config{URL: repo.HTTPURL(), Dir: b.TempDir()}, hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := src.Head(b.Context()); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name   string
		phase  bool
		rounds int
	}{{"lockstep", false, 2}, {"phased", true, 3}} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				g.ResetTraffic()
				window := time.Duration(mode.rounds) * interval
				ctx, cancel := context.WithTimeout(b.Context(), window)
				var failed atomic.Int64
				var latMu sync.Mutex
				var lat []time.Duration
				var wg sync.WaitGroup
				start := time.Now()
				for range agents {
					p := NewPoller(interval)
					if mode.phase {
						p.Phase = interval
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						p.Run(ctx, func(ctx context.Context) error {
							t0 := time.Now()
							_, err := src.Head(ctx)
							if err != nil && ctx.Err() == nil {
								failed.Add(1)
							}
							if err == nil {
								latMu.Lock()
								lat = append(lat, time.Since(t0))
								latMu.Unlock()
							}
							return err
						})
					}()
				}
				wg.Wait()
				cancel()
				per := make([]int, int(window/time.Second))
				n := 0
				for _, at := range g.Arrivals() {
					if s := int(at.Sub(start) / time.Second); s >= 0 && s < len(per) {
						per[s]++
						n++
					}
				}
				busiest, when := 0, 0
				for s, c := range per {
					if c > busiest {
						busiest, when = c, s
					}
				}
				mean := float64(n) / window.Seconds()
				slices.Sort(lat)
				var p50, p99, worst time.Duration
				if len(lat) > 0 {
					p50, p99, worst = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
				}
				b.ReportMetric(float64(p50.Milliseconds()), "poll-p50-ms")
				b.ReportMetric(mean, "mean-req/s")
				b.ReportMetric(float64(busiest), "busiest-req/s")
				b.ReportMetric(float64(busiest)/mean, "busiest/mean")
				b.ReportMetric(float64(failed.Load()), "failed-polls")
				b.Logf("%s: %d agents polling every %s ±10%% for %s: %d requests, mean %.1f/s, busiest second %d (second %d), busiest/mean %.2f, %d polls failed, poll latency p50 %s p99 %s max %s; per second: %v",
					mode.name, agents, interval, window, n, mean, busiest, when, float64(busiest)/mean, failed.Load(),
					p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond), fmt.Sprint(per))
			}
		})
	}
}
