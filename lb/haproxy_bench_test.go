package lb

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
)

// switchTimes collects, per switch, the wall time of Switch and of its
// phases (new servers added and UP; old ones drained; old ones removed).
type switchTimes struct {
	total, check, ready, drain, remove []time.Duration
}

func (s *switchTimes) observe(phase string, d time.Duration) {
	switch phase {
	case "check":
		s.check = append(s.check, d)
	case "ready":
		s.ready = append(s.ready, d)
	case "drain":
		s.drain = append(s.drain, d)
	case "remove":
		s.remove = append(s.remove, d)
	}
}

func (s *switchTimes) report(b *testing.B) {
	ms := func(ds []time.Duration) (mean, max float64) {
		if len(ds) == 0 {
			return 0, 0
		}
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		return float64(sum.Microseconds()) / 1000 / float64(len(ds)), float64(slices.Max(ds).Microseconds()) / 1000
	}
	mean, max := ms(s.total)
	b.ReportMetric(mean, "ms/switch")
	b.ReportMetric(max, "max-ms/switch")
	for _, p := range []struct {
		name string
		ds   []time.Duration
	}{{"check", s.check}, {"ready", s.ready}, {"drain", s.drain}, {"remove", s.remove}} {
		m, _ := ms(p.ds)
		b.ReportMetric(m, p.name+"-ms/switch")
	}
	b.Logf("switch times: %v", s.total)
}

// benchSwitches switches backend app to a fresh server b.N times, about
// every gap, while load runs through HAProxy; each server answers after
// 2 ms, so requests are in flight when one is drained.
func benchSwitches(b *testing.B, section string, gap time.Duration, during func(url string, total time.Duration) func()) {
	hp, sw := startHAProxy(b, section)
	times := &switchTimes{}
	cur := newAppServer(b, "v0", 2*time.Millisecond)
	if err := sw.Switch(context.Background(), []string{cur.addr}); err != nil {
		b.Fatal(err)
	}
	done := during(hp.URL()+"/", time.Duration(b.N)*gap+2*time.Second)
	time.Sleep(time.Second)
	sw.observe = times.observe
	b.ResetTimer()
	for i := range b.N {
		next := newAppServer(b, "v"+strconv.Itoa(i+1), 2*time.Millisecond)
		start := time.Now()
		if err := sw.Switch(context.Background(), []string{next.addr}); err != nil {
			b.Fatal(err)
		}
		times.total = append(times.total, time.Since(start))
		if n := cur.inflight.Load(); n != 0 {
			b.Fatalf("%d requests in flight on the old server when Switch returned", n)
		}
		cur = next
		if rest := gap - time.Since(start); rest > 0 {
			time.Sleep(rest)
		}
	}
	b.StopTimer()
	done()
	times.report(b)
}

// BenchmarkHAProxy_SwitchUnderLoad: 16 keep-alive clients in this process
// send GETs without pause through HAProxy while it is switched. Two check
// settings: the test backend's (fastinter and downinter 100 ms, rise 2),
// and HAProxy's defaults (inter 2 s, rise 2, fall 3), with which a new
// server needs two checks 2 s apart before it is UP.
func BenchmarkHAProxy_SwitchUnderLoad(b *testing.B) {
	for _, bc := range []struct{ name, section string }{
		{"checks=fast", ""},
		{"checks=default", "backend app\n    balance roundrobin\n    option httpchk GET /\n    default-server check\n"},
	} {
		b.Run(bc.name, func(b *testing.B) { benchGoLoad(b, bc.section) })
	}
}

func benchGoLoad(b *testing.B, section string) {
	benchSwitches(b, section, time.Second, func(url string, _ time.Duration) func() {
		l := testenv.StartLoad(b, url, 16)
		start := time.Now()
		return func() {
			ls := l.Stop()
			b.ReportMetric(float64(ls.Sent), "requests")
			b.ReportMetric(float64(ls.Sent)/time.Since(start).Seconds(), "req/s")
			b.ReportMetric(float64(ls.Failed), "failed")
			b.ReportMetric(float64(ls.ConnErrs), "conn-errors")
			if ls.Failed != 0 {
				b.Errorf("load: %s", ls)
			}
		}
	})
}

// BenchmarkHAProxy_SwitchUnderWrk: wrk (2 threads, 64 keep-alive
// connections) drives the load instead, from its own process.
func BenchmarkHAProxy_SwitchUnderWrk(b *testing.B) {
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Skip("wrk not installed (apt-get install -y wrk)")
	}
	benchSwitches(b, "", 1500*time.Millisecond, func(url string, total time.Duration) func() {
		cmd := exec.Command("wrk", "-t2", "-c64", "-d"+strconv.Itoa(int(total.Seconds())+1)+"s", "--timeout", "10s", url)
		out := make(chan []byte, 1)
		go func() {
			o, err := cmd.CombinedOutput()
			if err != nil {
				o = append(o, fmt.Sprintf("\nwrk: %v", err)...)
			}
			out <- o
		}()
		return func() {
			o := <-out
			b.Logf("wrk:\n%s", o)
			w := parseWrk(string(o))
			b.ReportMetric(w.requests, "requests")
			b.ReportMetric(w.rate, "req/s")
			b.ReportMetric(w.non2xx, "non-2xx")
			b.ReportMetric(w.sockErrs, "socket-errors")
			if w.requests == 0 || w.non2xx != 0 || w.sockErrs != 0 {
				b.Errorf("wrk saw failures:\n%s", o)
			}
		}
	})
}

type wrkResult struct{ requests, rate, non2xx, sockErrs float64 }

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkRate     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

func parseWrk(out string) wrkResult {
	var w wrkResult
	num := func(re *regexp.Regexp, i int) float64 {
		m := re.FindStringSubmatch(out)
		if len(m) <= i {
			return 0
		}
		v, _ := strconv.ParseFloat(m[i], 64)
		return v
	}
	w.requests = num(wrkRequests, 1)
	w.rate = num(wrkRate, 1)
	w.non2xx = num(wrkNon2xx, 1)
	for i := 1; i <= 4; i++ {
		w.sockErrs += num(wrkSocket, i)
	}
	return w
}
