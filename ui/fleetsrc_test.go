package ui

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"berth.dev/berth/fleet"
)

// slowFleet is an etcd whose overview and revision reads answer after
// delay, or never (0).
type slowFleet struct {
	fakeFleet
	delay                atomic.Int64
	overviews, revisions atomic.Int32
}

func (f *slowFleet) wait(ctx context.Context) error {
	d := time.Duration(f.delay.Load())
	if d == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *slowFleet) Overview(ctx context.Context, envs []string) ([]fleet.Overview, error) {
	f.overviews.Add(1)
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return f.fakeFleet.Overview(ctx, envs)
}

func (f *slowFleet) Revision(ctx context.Context) (int64, error) {
	f.revisions.Add(1)
	if err := f.wait(ctx); err != nil {
		return 0, err
	}
	return f.fakeFleet.Revision(ctx)
}

// An etcd that does not answer never holds a page: this host's pages do
// not ask it at all, a fleet page says so within pageWait, and however
// many viewers ask, one read is in flight.
func TestPages_AnEtcdThatDoesNotAnswerHoldsNoPage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := hostileHost(t)
		f := &slowFleet{fakeFleet: fakeFleet{envs: []fleet.Overview{threeHosts("v1")}}}
		s.Fleet = &Fleet{Reader: f, Envs: []string{"prod"}, Only: true}
		s.Now = nil
		h := s.Handler()

		start := time.Now()
		for _, path := range []string{"/", "/history?env=prod", "/jobs/prod/nightly"} {
			if res, _ := get(t, h, path); res.StatusCode != 200 {
				t.Errorf("%s: %d", path, res.StatusCode)
			}
		}
		synctest.Wait()
		if d := time.Since(start); d > 0 || f.overviews.Load()+f.revisions.Load() > 0 {
			t.Errorf("this host's pages took %s and made %d etcd reads", d, f.overviews.Load()+f.revisions.Load())
		}

		start = time.Now()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				_, page := get(t, h, "/fleet")
				if !strings.Contains(page, "etcd has not answered within 2s") {
					t.Errorf("the fleet page does not say etcd has not answered: %q", between(page, `class="err"`, "</p>"))
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d > pageWait {
			t.Errorf("the fleet page took %s", d)
		}
		if n := f.overviews.Load(); n != 1 {
			t.Errorf("%d overview reads for 20 viewers, want 1", n)
		}
		for _, path := range []string{"/fleet/host/prod/web-1", "/fleet/jobs/prod/nightly"} {
			start = time.Now()
			_, page := get(t, h, path)
			if d := time.Since(start); d > pageWait || !strings.Contains(page, "could not be read") {
				t.Errorf("%s: %s, %q", path, d, between(page, "<main", "</main>"))
			}
		}
		time.Sleep(fleetTimeout) // the reads in flight give up
	})
}

// A slow etcd's answer serves the next page; once it stops answering,
// the page shows the fleet it last read, saying when.
func TestFleetPage_ShowsTheLastAnswerWithItsTimeWhenEtcdIsSlow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &slowFleet{fakeFleet: fakeFleet{envs: []fleet.Overview{threeHosts("release one")}}}
		f.delay.Store(int64(3 * time.Second))
		s := &Server{Fleet: &Fleet{Reader: f}}
		h := s.Handler()
		read := time.Now()
		if _, page := get(t, h, "/"); !strings.Contains(page, "has not answered") || strings.Contains(page, "release one") {
			t.Errorf("first page: %q", between(page, "<main", "</main>"))
		}
		time.Sleep(1500 * time.Millisecond) // the read lands, 3 s after it started
		if _, page := get(t, h, "/"); strings.Contains(page, "could not be read") || !strings.Contains(page, "release one") {
			t.Errorf("once etcd answered: %q", between(page, "<main", "</main>"))
		}
		f.delay.Store(0)
		time.Sleep(snapFor)
		_, page := get(t, h, "/")
		if !strings.Contains(page, "has not answered") || !strings.Contains(page, "release one") ||
			!strings.Contains(page, "as etcd last answered, at "+`<time datetime="`+read.UTC().Format(time.RFC3339)) {
			t.Errorf("etcd silent: %q", between(page, "<main", "<section"))
		}
		time.Sleep(fleetTimeout) // the reads in flight give up
	})
}
