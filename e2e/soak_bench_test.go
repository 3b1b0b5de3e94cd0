package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/internal/testenv"
)

// BenchmarkSoak drives the built berth binary through BERTH_SOAK_DEPLOYS
// deploys (quick flips between two images of an env with a migration, a
// worker and a server behind nginx, each deploy with a new migration
// command as a real release has), a job run every 3 s, three restarts of
// the agent (two SIGTERM, one SIGKILL), under constant keep-alive load
// through nginx. It then reports the growth of everything an agent that
// runs for a year must keep flat, from a baseline taken after the restarts
// and the journal's 200-record cap are behind it, to the end, and fails
// when anything grows past its cap or the load saw a non-2xx answer. Off
// unless BERTH_SOAK_DEPLOYS is set (scripts/soak sets it).
//
//	BERTH_SOAK_DEPLOYS=500 go test -run '^$' -bench Soak -benchtime 1x -timeout 3h ./e2e
func BenchmarkSoak(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("BERTH_SOAK_DEPLOYS"))
	if n <= 0 {
		b.Skip("set BERTH_SOAK_DEPLOYS (scripts/soak)")
	}
	for b.Loop() {
		runSoak(b, n)
	}
}

// soakCaps: the most each figure may grow from the baseline to the end.
// Anything that grows with the number of deploys passes them in a long
// enough run; noise does not.
var soakCaps = []struct {
	name string
	cap  float64
	unit string
}{
	{"rss", 8 << 20, "B"},
	{"heap_live", 2 << 20, "B"}, // after a forced GC
	{"heap_objects", 20000, ""},
	{"goroutines", 3, ""},
	{"open_fds", 3, ""},
	{"threads", 4, ""},
	{"state_files", 40, ""}, // the Git store swings between 1 and 17 packs (2 files each)
	{"state_bytes", 1 << 20, "B"},
	{"git_packs", 16, ""},
	{"images", 0, ""},
	{"containers", 1, ""}, // a job run may be in flight at either sample
	{"networks", 0, ""},
	{"volumes", 0, ""},
}

// soakMaxPacks: the store is compacted once it holds
// gitsource.DefaultMaxPacks, so no fetch takes it past that.
const soakMaxPacks = gitsource.DefaultMaxPacks

type soakSample struct {
	deploy int
	at     time.Time
	v      map[string]float64
}

func runSoak(b *testing.B, n int) {
	w := newWorld(b)
	w.d.CleanupLabel(b, engine.LabelJobEnv, w.env)
	imgs := []testenv.AppImage{
		testenv.PushApp(b, w.reg, testenv.ImageSpec{Version: "v1"}),
		testenv.PushApp(b, w.reg, testenv.ImageSpec{Version: "v2"}),
	}
	for _, img := range imgs {
		w.d.CleanupImage(img.Ref())
	}
	commit := func(i int) string {
		img := imgs[i%2]
		compose := fmt.Sprintf(`services:
  migrate:
    image: %[1]s
    command: ["/app", "migrate-%[2]d"]
    environment: {APP_MODE: exit}
    x-berth: {role: migrate}
  worker:
    image: %[1]s
    environment: {APP_PORT: "9000"}
  web:
    image: %[1]s
    environment: {APP_MODE: serve}
    x-berth: {role: server, port: 8080}
x-berth:
  lb: {type: nginx, upstream: app, file: %[3]s}
  jobs:
    tick:
      schedule: "@every 3s"
      service: worker
      history: 20
      environment: {APP_MODE: exit}
`, img.Ref(), i, w.lbFile)
		return w.repo.CommitFiles(b, fmt.Sprintf("release %d (%s)", i, img.Version), map[string]string{"envs/" + w.env + "/compose.yaml": compose})
	}

	a := startSoakAgent(b, w)
	defer func() { a.stop(syscall.SIGTERM) }()
	first := commit(0)
	w.waitLive(b, first, 2*time.Minute)
	w.waitAPI(b)

	load := testenv.StartLoad(b, w.nginx.URL()+"/", 4, testenv.LoadOptions{Every: 5 * time.Millisecond})

	restarts := map[int]syscall.Signal{n / 10: syscall.SIGTERM, 2 * n / 10: syscall.SIGKILL, 3 * n / 10: syscall.SIGTERM}
	// The baseline: after the restarts, and once the journal reached its
	// 200-record cap (so what is capped is no longer filling up).
	baselineAt := min(max(3*n/10+20, 220), n*6/10)
	var samples []soakSample
	var deployTimes []time.Duration
	started := time.Now()
	for i := 1; i <= n; i++ {
		c := commit(i)
		t0 := time.Now()
		w.soakHook()
		w.waitLive(b, c, 2*time.Minute)
		deployTimes = append(deployTimes, time.Since(t0))
		if sig, ok := restarts[i]; ok {
			a.stop(sig)
			a = startSoakAgent(b, w)
			w.waitLive(b, c, time.Minute)
			w.waitAPI(b)
		}
		if i == baselineAt || i == n || (i > baselineAt && i%25 == 0) {
			samples = append(samples, w.soakSample(b, a, i))
		}
		if i%25 == 0 {
			ls := load.Stats()
			ok, bad := ls.Sent-ls.Failed, ls.Failed
			fmt.Printf("soak: %d/%d deploys in %s, load %d ok / %d failed, last deploy %s\n", i, n, time.Since(started).Round(time.Second), ok, bad, deployTimes[len(deployTimes)-1].Round(time.Millisecond))
		}
	}

	// Idle: no deploys, jobs still every 3 s; log lines per hour.
	idle := 90 * time.Second
	lines0 := a.lines.Load()
	time.Sleep(idle)
	idleLines := float64(a.lines.Load()-lines0) * float64(time.Hour) / float64(idle)
	runs := w.jobRunCount(b)

	ls := load.Stop()
	ok, bad := ls.Sent-ls.Failed, ls.Failed
	base, end := samples[0], samples[len(samples)-1]
	var report strings.Builder
	fmt.Fprintf(&report, "soak: %d deploys in %s (p50 %s, p95 %s per deploy), %d agent restarts, %d job runs kept of the last\n",
		n, time.Since(started).Round(time.Second), pct(deployTimes, 50).Round(time.Millisecond), pct(deployTimes, 95).Round(time.Millisecond), len(restarts), runs)
	fmt.Fprintf(&report, "load: %d requests through nginx, %d non-2xx or failed\n", ok+bad, bad)
	fmt.Fprintf(&report, "log lines per idle hour (jobs every 3 s, info level): %.0f\n", idleLines)
	fmt.Fprintf(&report, "| figure | at deploy %d | at deploy %d | growth | per 100 deploys (fit) | cap |\n|---|---|---|---|---|---|\n", base.deploy, end.deploy)
	var failures []string
	for _, c := range soakCaps {
		growth := end.v[c.name] - base.v[c.name]
		fmt.Fprintf(&report, "| %s | %s | %s | %s | %s | %s |\n", c.name, human(base.v[c.name], c.unit), human(end.v[c.name], c.unit),
			human(growth, c.unit), human(100*slope(samples, c.name), c.unit), human(c.cap, c.unit))
		if growth > c.cap {
			failures = append(failures, fmt.Sprintf("%s grew by %s (cap %s)", c.name, human(growth, c.unit), human(c.cap, c.unit)))
		}
	}
	fmt.Fprintf(&report, "\nsamples (deploy: rss, heap_live, heap_objects, goroutines, open_fds, state_files, state_bytes, git_packs):\n")
	for _, s := range samples {
		fmt.Fprintf(&report, "  %d: %s %s %.0f %.0f %.0f %.0f %s %.0f\n", s.deploy, human(s.v["rss"], "B"), human(s.v["heap_live"], "B"), s.v["heap_objects"],
			s.v["goroutines"], s.v["open_fds"], s.v["state_files"], human(s.v["state_bytes"], "B"), s.v["git_packs"])
	}
	fmt.Print(report.String())
	if f := os.Getenv("BERTH_SOAK_REPORT"); f != "" {
		os.WriteFile(f, []byte(report.String()), 0o644)
	}
	b.ReportMetric(float64(bad), "non-2xx")
	b.ReportMetric(idleLines, "log-lines/idle-h")
	b.ReportMetric(end.v["rss"]-base.v["rss"], "rss-growth-B")
	b.ReportMetric(end.v["heap_live"]-base.v["heap_live"], "heap-growth-B")
	for _, s := range samples {
		if s.v["git_packs"] > soakMaxPacks {
			failures = append(failures, fmt.Sprintf("%.0f Git packs at deploy %d (at most %d)", s.v["git_packs"], s.deploy, soakMaxPacks))
		}
	}
	if bad > 0 {
		failures = append(failures, fmt.Sprintf("%d requests through nginx failed or answered non-2xx: %s", bad, ls.Samples))
	}
	if idleLines > 2*float64(time.Hour/(3*time.Second))+120 {
		failures = append(failures, fmt.Sprintf("%.0f log lines per idle hour (cap: 2 per job run + 120)", idleLines))
	}
	if len(failures) > 0 {
		b.Fatalf("soak failed:\n  %s", strings.Join(failures, "\n  "))
	}
}
