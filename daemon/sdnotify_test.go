package daemon

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"berth.dev/berth/reconcile"
	"github.com/hashicorp/go-hclog"
)

// The watchdog answers systemd while the loop makes progress — between
// passes, and in a pass that keeps entering steps — and stops once a pass
// has shown no progress for longer than the stall limit, so systemd
// restarts the wedged agent. It says why, once.
func TestWatchdog_PingsOnlyWhileTheLoopMakesProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var sent []string
		send := func(s string) { mu.Lock(); sent = append(sent, s); mu.Unlock() }
		pings := func() int {
			mu.Lock()
			defer mu.Unlock()
			return strings.Count(strings.Join(sent, "\n"), "WATCHDOG=1")
		}
		w := newWatchdog(10*time.Minute, hclog.NewNullLogger())
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go w.run(ctx, 30*time.Second, send)

		time.Sleep(time.Hour) // idle between passes (a long Retry-After): never wedged
		synctest.Wait()
		if n := pings(); n < 100 {
			t.Fatalf("%d pings in an idle hour, want one per 30 s", n)
		}
		for range 4 { // a pass entering a step every 8 minutes: progress
			w.Progress("prod", reconcile.Progress{Phase: "servers"})
			time.Sleep(8 * time.Minute)
		}
		before := pings()
		time.Sleep(time.Minute)
		synctest.Wait()
		if pings() == before {
			t.Fatal("a pass making progress stopped the pings")
		}
		w.Progress("prod", reconcile.Progress{Phase: "cli"}) // then it hangs in cli
		time.Sleep(11 * time.Minute)
		synctest.Wait()
		wedged := pings()
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if pings() != wedged {
			t.Fatal("a pass without progress for longer than the stall limit is still answered")
		}
		mu.Lock()
		statuses := slices.DeleteFunc(slices.Clone(sent), func(s string) bool { return s == "WATCHDOG=1" })
		mu.Unlock()
		if len(statuses) != 1 || !strings.Contains(statuses[0], "STATUS=wedged: env prod: no progress for") || !strings.Contains(statuses[0], "in phase cli") {
			t.Fatalf("status messages %q, want one saying the pass is wedged in cli", statuses)
		}
		w.PassEnded("prod", reconcile.Pass{}) // it came back after all
		time.Sleep(time.Minute)
		synctest.Wait()
		if pings() == wedged {
			t.Fatal("pings did not resume after the pass ended")
		}
	})
}

// Each env's pass is watched on its own: another env's progress does not
// hide one that is wedged.
func TestWatchdog_OneWedgedEnvAmongSeveral(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWatchdog(10*time.Minute, hclog.NewNullLogger())
		w.Progress("shop", reconcile.Progress{Phase: "cli"})
		for range 12 {
			w.Progress("blog", reconcile.Progress{Phase: "servers"})
			w.PassEnded("blog", reconcile.Pass{})
			time.Sleep(time.Minute)
		}
		ok, why := w.healthy()
		if ok || !strings.Contains(why, "env shop: no progress for 12m0s in phase cli") {
			t.Fatalf("healthy %v (%s), want shop wedged", ok, why)
		}
		w.PassEnded("shop", reconcile.Pass{})
		if ok, _ := w.healthy(); !ok {
			t.Fatal("still wedged after shop's pass ended")
		}
	})
}
