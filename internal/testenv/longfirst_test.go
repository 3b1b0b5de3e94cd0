package testenv

import (
	"slices"
	"sync"
	"testing"
)

// The scheduler starts the waiting tests longest first, one never timed
// before them all, and never more than its slots at once.
func TestLongestFirst_StartsTheLongestFirst(t *testing.T) {
	l := newLongFirst()
	l.slots, l.loaded = 2, true
	l.weights = map[string]float64{"short": 1, "long": 100, "mid": 10, "tiny": 0.1}
	names := []string{"short", "tiny", "mid", "new", "long"}
	for _, n := range names {
		l.register(n)
	}
	var mu sync.Mutex
	var order []string
	most, running := 0, 0
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			l.acquire(n)
			mu.Lock()
			order = append(order, n)
			running++
			most = max(most, running)
			running--
			mu.Unlock()
			l.release()
		}()
	}
	close(gate)
	wg.Wait()
	if want := []string{"new", "long", "mid", "short", "tiny"}; !slices.Equal(order, want) {
		t.Errorf("started %v, want %v", order, want)
	}
	if most > 2 {
		t.Errorf("%d at once, want at most 2", most)
	}
}
