package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"berth.dev/berth/internal/failure"
)

// ClockTolerance is how far ahead of etcd's clock (as this host estimates
// it) a scheduled time may be and still be claimed. A host whose clock is
// further ahead claims nothing: it would otherwise name times in the
// fleet's future, and a job's high-water mark would then refuse every
// earlier time on every host until that future came.
const ClockTolerance = 5 * time.Second

// SkewWarn is how far off etcd's clock a host's clock may be before the
// host warns in its log and shows as skewed.
const SkewWarn = 5 * time.Second

// ErrClockAhead: a scheduled time is beyond etcd's clock plus the
// tolerance; this host's clock is ahead. It wraps ErrClaimed too: a host
// with a right clock claims the time when it comes.
var ErrClockAhead = errors.New("this host's clock is ahead of etcd's")

// etcdClock is this host's estimate of etcd's clock: etcd's wall time at
// one instant of this process's monotonic clock. Its reading moves with
// the monotonic clock, so stepping this host's wall clock (or the clock a
// test injects) changes the skew at once, without measuring again.
type etcdClock struct {
	mu    sync.Mutex
	at    time.Time // etcd's time, estimated, at mono
	mono  time.Time // time.Now() then, monotonic reading included
	known bool
}

// etcdNow is etcd's clock now, as far as this host knows it.
func (c *Client) etcdNow() (time.Time, bool) {
	c.eclock.mu.Lock()
	defer c.eclock.mu.Unlock()
	if !c.eclock.known {
		return time.Time{}, false
	}
	return c.eclock.at.Add(time.Since(c.eclock.mono)), true
}

// ClockSkew is this host's clock minus etcd's (positive: ahead), to about
// a second, and whether etcd's clock was measured yet. It is what the
// host publishes, what `berth fleet status` shows and what the agent's
// metrics export.
func (c *Client) ClockSkew() (time.Duration, bool) {
	en, ok := c.etcdNow()
	if !ok {
		return 0, false
	}
	return c.now().Sub(en).Round(time.Second), true
}

// measureSkew estimates etcd's clock from the Date header of etcd's
// /version endpoint (served on the client URL, without authentication).
// Date has a resolution of one second, so the estimate is to the second:
// enough to refuse a host whose clock is hours ahead, and to show one
// that is 90 s off.
func (c *Client) measureSkew(ctx context.Context) error {
	tr := &http.Transport{TLSClientConfig: c.ecfg.TLS, Proxy: nil}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: c.cfg.Timeout}
	var last error = errors.New("no endpoint")
	for _, ep := range c.cfg.Etcd.Endpoints {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(ep, "/")+"/version", nil)
		if err != nil {
			last = err
			continue
		}
		t0 := time.Now()
		resp, err := hc.Do(req)
		t1 := time.Now()
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		date, err := http.ParseTime(resp.Header.Get("Date"))
		if err != nil {
			last = fmt.Errorf("etcd's Date header: %w", err)
			continue
		}
		// The server's clock read somewhere in [date, date+1s) while we
		// waited between t0 and t1.
		c.eclock.mu.Lock()
		c.eclock.at, c.eclock.mono, c.eclock.known = date.Add(500*time.Millisecond), t0.Add(t1.Sub(t0)/2), true
		c.eclock.mu.Unlock()
		c.checkSkew()
		return nil
	}
	return failure.AsOutage(fmt.Errorf("read etcd's clock: %w", last))
}

// checkSkew updates the published skew when it moved by 2 s or more (the
// estimate's own jitter is not worth a write), and says so in the log
// when the host is 5 s or more off.
func (c *Client) checkSkew() {
	skew, ok := c.ClockSkew()
	if !ok {
		return
	}
	if old := time.Duration(c.skew.Load()); (skew - old).Abs() >= 2*time.Second {
		c.skew.Store(int64(skew))
		if skew.Abs() >= SkewWarn {
			c.log.Warn("this host's clock is off from etcd's: its job claims are refused while it is ahead; fix its time sync", "skew", skew)
		} else if old.Abs() >= SkewWarn {
			c.log.Info("this host's clock agrees with etcd's again", "skew", skew)
		}
		c.kick()
	}
}

// checkClaimTime refuses a scheduled time beyond etcd's clock plus the
// tolerance (measuring etcd's clock first if it never was).
func (c *Client) checkClaimTime(ctx context.Context, env, job string, t time.Time) error {
	en, ok := c.etcdNow()
	if !ok {
		if err := c.measureSkew(ctx); err != nil {
			return err
		}
		en, _ = c.etcdNow()
	}
	if ahead := t.Sub(en); ahead > ClockTolerance {
		skew, _ := c.ClockSkew()
		if c.aheadWarn.Swap(time.Now().Unix()) < time.Now().Add(-time.Minute).Unix() {
			c.log.Warn("scheduled time not claimed: this host's clock is ahead of etcd's; hosts with a right clock claim it",
				"env", env, "job", job, "scheduled", t, "skew", skew)
		}
		return fmt.Errorf("%w: %w: %s is %s ahead of etcd's clock (this host's clock is %s ahead; tolerance %s)",
			ErrClaimed, ErrClockAhead, t.UTC().Format(time.RFC3339), ahead.Round(time.Second), skew, ClockTolerance)
	}
	return nil
}
