package testenv

import (
	"bufio"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A package of few, long, parallel tests (e2e: 27 tests of 30 s to 4 min)
// finishes when its last test does. Go releases paused parallel tests in
// no useful order, so a 3-minute test could start last and run alone at
// the end: the package took 577 s for 3,005 s of tests on 6 slots. Started
// longest first (by the last run's times, which scripts/test keeps), the
// long ones overlap and the short ones fill in around them.
//
// Use: TestMain calls LongestFirst(m) before m.Run, and every top-level
// test calls Parallel(t) instead of t.Parallel(). -parallel keeps its
// meaning: at most that many of the package's tests run at once.

// LongestFirst takes over -parallel for the package's top-level tests:
// Parallel admits that many at once, longest first, and Go's own limit is
// lifted so that it does not pick among them first.
func LongestFirst(m *testing.M) {
	_ = m
	flag.Parse()
	f := flag.Lookup("test.parallel")
	if f == nil {
		return
	}
	n, err := strconv.Atoi(f.Value.String())
	if err != nil || n < 1 {
		return
	}
	sched.mu.Lock()
	sched.slots = n
	sched.mu.Unlock()
	_ = f.Value.Set("10000")
}

// Parallel is t.Parallel() for a package using LongestFirst: the test
// waits until it is the longest of those not started yet and a slot is
// free. A test that did not run last time counts as the longest.
func Parallel(t *testing.T) {
	t.Helper()
	name := t.Name()
	sched.register(name)
	t.Parallel()
	start := time.Now()
	sched.acquire(name)
	if sched.slots > 0 {
		// Go counts the wait in the test's time: the next run's order
		// subtracts it (lastRunTimes).
		t.Logf("%s%.1fs", admittedAfter, time.Since(start).Seconds())
	}
	t.Cleanup(sched.release)
}

// admittedAfter starts the line Parallel logs with how long the test
// waited for its turn.
const admittedAfter = "testenv: admitted after "

var sched = newLongFirst()

type longFirst struct {
	mu      sync.Mutex
	cond    *sync.Cond
	slots   int // 0: no limit (LongestFirst was not called)
	running int
	waiting map[string]bool
	weights map[string]float64
	loaded  bool
}

func newLongFirst() *longFirst {
	l := &longFirst{waiting: map[string]bool{}}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *longFirst) register(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.loaded {
		l.weights, l.loaded = lastRunTimes(), true
	}
	l.waiting[name] = true
}

func (l *longFirst) acquire(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.slots > 0 && (l.running >= l.slots || l.next() != name) {
		l.cond.Wait()
	}
	delete(l.waiting, name)
	l.running++
	l.cond.Broadcast()
}

func (l *longFirst) release() {
	l.mu.Lock()
	l.running--
	l.mu.Unlock()
	l.cond.Broadcast()
}

// next is the waiting test to start first: the longest last time (one
// not seen then first), then by name.
func (l *longFirst) next() string {
	best, bestW := "", -1.0
	for name := range l.waiting {
		w, ok := l.weights[name]
		if !ok {
			w = math.Inf(1)
		}
		if w > bestW || (w == bestW && name < best) {
			best, bestW = name, w
		}
	}
	return best
}

// lastRunTimes reads each top-level test's time in the last run from the
// go test -json stream scripts/test keeps in the cache dir (none: every
// test weighs the same), less the time it waited for its turn.
func lastRunTimes() map[string]float64 {
	out, waited := map[string]float64{}, map[string]float64{}
	f, err := os.Open(filepath.Join(CacheDir(), "last-go-test-1.json"))
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for s.Scan() {
		var e struct {
			Action  string
			Test    string
			Elapsed float64
			Output  string
		}
		if json.Unmarshal(s.Bytes(), &e) != nil || e.Test == "" || strings.Contains(e.Test, "/") {
			continue
		}
		switch e.Action {
		case "output":
			if _, after, ok := strings.Cut(e.Output, admittedAfter); ok {
				if w, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(after), "s"), 64); err == nil {
					waited[e.Test] = w
				}
			}
		case "pass", "fail":
			out[e.Test] = max(out[e.Test], e.Elapsed)
		}
	}
	for name, w := range waited {
		if d, ok := out[name]; ok {
			out[name] = max(d-w, 0)
		}
	}
	return out
}
