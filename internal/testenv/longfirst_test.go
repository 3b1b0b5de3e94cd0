package testenv

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// admitAll registers names with l and runs body for each in a goroutine
// of its own, between acquire and release; wait waits for them all.
func admitAll(l *longFirst, names []string, body func(name string)) (wait func()) {
	for _, n := range names {
		l.register(n)
	}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.acquire(n)
			body(n)
			l.release()
		}()
	}
	return wg.Wait
}

// The scheduler starts the waiting tests longest first, one never timed
// before them all.
func TestLongestFirst_StartsTheLongestFirst(t *testing.T) {
	// One slot: a test starts only once the one before it has released,
	// so the order the tests record is the order they were admitted in.
	l := newLongFirst()
	l.slots, l.loaded = 1, true
	l.weights = map[string]float64{"short": 1, "long": 100, "mid": 10, "tiny": 0.1}
	var mu sync.Mutex
	var order []string
	admitAll(l, []string{"short", "tiny", "mid", "new", "long"}, func(n string) {
		mu.Lock()
		order = append(order, n)
		mu.Unlock()
	})()
	if want := []string{"new", "long", "mid", "short", "tiny"}; !slices.Equal(order, want) {
		t.Errorf("started %v, want %v", order, want)
	}
}

// Never more tests run at once than the scheduler has slots.
func TestLongestFirst_NeverMoreThanItsSlots(t *testing.T) {
	l := newLongFirst()
	l.slots, l.loaded = 2, true
	names := []string{"a", "b", "c", "d", "e"}
	var mu sync.Mutex
	running, most := 0, 0
	started := make(chan struct{}, len(names))
	hold := make(chan struct{})
	wait := admitAll(l, names, func(string) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		started <- struct{}{}
		<-hold
		mu.Lock()
		running--
		mu.Unlock()
	})
	// The first two hold their slots until both have started.
	<-started
	<-started
	close(hold)
	wait()
	if most != 2 {
		t.Errorf("%d ran at once, want 2 (the slots)", most)
	}
}

// A test's weight is its time in the last run less the time it waited
// for its turn (Go counts both).
func TestLongestFirst_WeighsTheLastRunLessItsWait(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("BERTH_CACHE_DIR", dir)
	stream := `{"Action":"output","Test":"TestLong","Output":"    longfirst.go:61: testenv: admitted after 300.5s\n"}
{"Action":"pass","Test":"TestLong","Elapsed":400.5}
{"Action":"pass","Test":"TestShort","Elapsed":50}
{"Action":"pass","Test":"TestShort/sub","Elapsed":49}
not json
`
	if err := os.WriteFile(filepath.Join(dir, "last-go-test-1.json"), []byte(stream), 0o600); err != nil {
		t.Fatal(err)
	}
	got := lastRunTimes()
	if want := map[string]float64{"TestLong": 100, "TestShort": 50}; !maps.Equal(got, want) {
		t.Fatalf("weights %v, want %v", got, want)
	}
}
