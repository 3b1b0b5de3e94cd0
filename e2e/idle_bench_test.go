package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// BenchmarkIdleDaemon measures `berth run` once it has converged: resident
// memory and CPU while it polls an unchanged repo (each poll: a ref listing
// and a container listing). It polls every 5 s — twelve times the default
// 60 s — for 30 s, so the CPU figure is an upper bound for the default.
// The resident memory is also split into anonymous pages and the binary's,
// these by section (text, rodata, pclntab); then the status page is viewed
// (built at that first request) and the RSS measured again 10 s later.
//
//	go test -run '^$' -bench IdleDaemon -benchtime 1x ./e2e
//
// With BERTH_IDLE_PROFILE=DIR it writes, at the end, the agent's smaps, a
// heap profile after a GC (`go tool pprof -sample_index=inuse_space`; with
// GODEBUG=memprofilerate=4096 for a finer one), the runtime's MemStats and
// its goroutines into DIR.
func BenchmarkIdleDaemon(b *testing.B) { benchIdle(b, false) }

// BenchmarkIdleDaemonFleet is the same with a fleet: block (one etcd
// member): the agent also keeps an etcd session, its host record and a
// watch of the fleet's controls.
func BenchmarkIdleDaemonFleet(b *testing.B) { benchIdle(b, true) }

func benchIdle(b *testing.B, withFleet bool) {
	w := newWorld(b)
	img := testenv.PushApp(b, w.reg, testenv.ImageSpec{Version: "v1"})
	w.d.CleanupImage(img.Ref())
	w.commit("v1", img, "serve")
	cfg, _ := os.ReadFile(w.config)
	text := strings.Replace(string(cfg), "poll_interval: 1s", "poll_interval: 5s", 1)
	if withFleet {
		text += "fleet:\n  etcd: {endpoints: [" + testenv.StartEtcd(b).ClientURL + "]}\n  host: idle-1\n"
	}
	os.WriteFile(w.config, []byte(text), 0o600)
	for b.Loop() {
		d := w.start()
		d.waitFor(b, `"@message":"deployed"`)
		pid := d.cmd.Process.Pid
		cpu0, wall0 := cpuTicks(b, pid), time.Now()
		time.Sleep(30 * time.Second)
		cpu := float64(cpuTicks(b, pid)-cpu0) / 100 // USER_HZ
		b.ReportMetric(100*cpu/time.Since(wall0).Seconds(), "cpu-%")
		b.ReportMetric(float64(rssKiB(b, pid))/1024, "rss-MiB")
		b.ReportMetric(float64(statusKiB(b, pid, "RssAnon:"))/1024, "anon-MiB")
		b.ReportMetric(float64(statusKiB(b, pid, "RssFile:"))/1024, "file-MiB")
		for name, kib := range residentSections(b, pid, w.bin) {
			b.ReportMetric(float64(kib)/1024, name+"-MiB")
		}
		// The page keeps its parsed templates (and what it read) once
		// asked: at most 1 MiB more (docs/benchmarks.md).
		for _, path := range []string{"/", "/history", "/"} {
			w.get(b, path)
		}
		time.Sleep(10 * time.Second)
		b.ReportMetric(float64(rssKiB(b, pid))/1024, "rss-page-MiB")
		b.ReportMetric(float64(statusKiB(b, pid, "RssAnon:"))/1024, "anon-page-MiB")
		for name, kib := range residentSections(b, pid, w.bin) {
			b.ReportMetric(float64(kib)/1024, name+"-page-MiB")
		}
		if dir := os.Getenv("BERTH_IDLE_PROFILE"); dir != "" {
			w.saveIdleProfile(b, pid, dir)
		}
		d.kill()
	}
}

// get is a GET of the agent's local API that must answer 200.
func (w *world) get(b *testing.B, path string) []byte {
	resp, err := w.apiClient().Get("http://berth" + path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v\n%s", path, resp.StatusCode, err, body)
	}
	return body
}

// saveIdleProfile writes what the agent's memory is made of into dir.
func (w *world) saveIdleProfile(b *testing.B, pid int, dir string) {
	smaps, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for name, body := range map[string][]byte{"smaps": smaps, "heap.pb.gz": w.get(b, "/debug/pprof/heap?gc=1"),
		"memstats.txt": w.get(b, "/debug/pprof/heap?debug=1"), "goroutines.txt": w.get(b, "/debug/pprof/goroutine?debug=1")} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

func rssKiB(b *testing.B, pid int) int64 { return statusKiB(b, pid, "VmRSS:") }

// statusKiB is a kB field of /proc/PID/status (VmRSS:, RssAnon:, …).
func statusKiB(b *testing.B, pid int, field string) int64 {
	s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(s), "\n") {
		if strings.HasPrefix(line, field) {
			n, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return n
		}
	}
	return 0
}
