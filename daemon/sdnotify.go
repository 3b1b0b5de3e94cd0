package daemon

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/reconcile"
)

// sdNotify sends a systemd notification (READY=1, STATUS=…, STOPPING=1,
// WATCHDOG=1) to $NOTIFY_SOCKET when systemd started the agent with
// Type=notify; without the variable it does nothing.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}

// watchdogInterval is how often systemd wants WATCHDOG=1 (half its
// WatchdogSec, from $WATCHDOG_USEC), or 0 when the unit sets no watchdog
// or set it for another process.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// watchdog answers systemd's watchdog only while the reconcile loop makes
// progress, so that a wedged agent is restarted (WatchdogSec in the unit).
// Progress is a pass starting, entering a step, changing something, or
// ending. Between passes the loop only waits on a timer (or a server's
// Retry-After), which cannot wedge: it always counts as progress. A pass
// that shows none for longer than stall — every step of berth's has its
// own deadline well below it — is wedged.
type watchdog struct {
	stall time.Duration
	now   func() time.Time
	log   hclog.Logger

	mu     sync.Mutex
	passes map[string]*beat // by env: each env's pass is watched on its own
	wedged bool
}

// beat is one env's pass in flight.
type beat struct {
	phase reconcile.Phase
	at    time.Time
}

func newWatchdog(stall time.Duration, log hclog.Logger) *watchdog {
	return &watchdog{stall: stall, now: time.Now, log: log, passes: map[string]*beat{}}
}

// Progress notes env's pass starting or entering a step.
func (w *watchdog) Progress(env string, p reconcile.Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.passes[env], w.wedged = &beat{p.Phase, w.now()}, false
}

// PassEnded notes env's pass ending.
func (w *watchdog) PassEnded(env string, _ reconcile.Pass) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.passes, env)
	w.wedged = false
}

// healthy says whether every env's loop makes progress, and if not, why
// not: one wedged env restarts the agent (its other envs converge again
// from their containers, as after any restart).
func (w *watchdog) healthy() (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, env := range slices.Sorted(maps.Keys(w.passes)) {
		b := w.passes[env]
		if b.phase == reconcile.PhaseFleet {
			continue // waiting for its turn in a fleet's rollout (canaries, pause, slots) is not wedged
		}
		if idle := w.now().Sub(b.at); idle > w.stall {
			why := fmt.Sprintf("no progress for %s in phase %s", idle.Round(time.Second), b.phase)
			if len(w.passes) > 1 || env != "" {
				why = fmt.Sprintf("env %s: %s", env, why)
			}
			return false, why
		}
	}
	return true, ""
}

// run sends WATCHDOG=1 every interval while healthy, until ctx ends. With
// no interval (no systemd watchdog) it still logs a wedged pass, once.
func (w *watchdog) run(ctx context.Context, interval time.Duration, send func(string)) {
	tick := interval
	if tick <= 0 {
		tick = 30 * time.Second
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		ok, why := w.healthy()
		if ok {
			if interval > 0 {
				send("WATCHDOG=1")
			}
		} else {
			w.mu.Lock()
			first := !w.wedged
			w.wedged = true
			w.mu.Unlock()
			if first {
				w.log.Error("the reconcile loop is wedged: no longer answering the systemd watchdog, which restarts berth", "reason", why)
				send("STATUS=wedged: " + why + "; waiting for systemd's watchdog to restart berth")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
