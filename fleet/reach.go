package fleet

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Whether etcd answers, as this client sees it. A host queued for its
// turn sits in a watch and asks etcd nothing, so a call failing cannot
// tell it etcd went away; the session's keepalives can: the client sends
// one every third of the lease TTL, and etcd answers each. Listening to
// them costs no request of its own.

// WaitingForEtcd is what Admit tells its Waiting hook while etcd does not
// answer: whatever it waited for cannot move until etcd is back. The
// reason it waited for before comes back once etcd answers.
const WaitingForEtcd = "waiting for etcd"

// heard notes that etcd answered this client (a call or a keepalive).
func (c *Client) heard() { c.lastHeard.Store(time.Now().UnixNano()) }

// silent reports whether etcd looks unreachable: the last call failed as
// an outage, or no keepalive of the session was answered for about two
// of their intervals.
func (c *Client) silent() bool {
	if c.down.Load() {
		return true
	}
	last := c.lastHeard.Load()
	ttl := c.cfg.LeaseTTL
	return last != 0 && time.Since(time.Unix(0, last)) > max(ttl/2, ttl/3+time.Second)
}

// hearKeepAlives listens to s's keepalive answers until it ends: each is
// an answer from etcd (and the first after an outage wakes Run, as any
// answer does).
func (c *Client) hearKeepAlives(cli *clientv3.Client, s *concurrency.Session) {
	ctx, cancel := context.WithCancel(c.ctx)
	ch, err := cli.KeepAlive(ctx, s.Lease())
	if err != nil {
		cancel()
		return
	}
	c.heard()
	go func() {
		defer cancel()
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return
				}
				c.heard()
				c.answered()
			case <-s.Done():
				return
			}
		}
	}()
}

// waitNote tells a Waiting hook what a call waits for, and "waiting for
// etcd" over it while etcd is silent, the reason coming back after.
type waitNote struct {
	mu     sync.Mutex
	hook   func(string)
	reason string
	etcd   bool // the hook was told WaitingForEtcd
	ended  bool
}

// set is the call's own reason ("" when it stops waiting).
func (n *waitNote) set(s string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ended {
		return
	}
	n.reason = s
	if !n.etcd {
		n.hook(s)
	}
}

// outage says whether etcd is silent now.
func (n *waitNote) outage(silent bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ended || silent == n.etcd {
		return
	}
	n.etcd = silent
	if silent {
		n.hook(WaitingForEtcd)
	} else {
		n.hook(n.reason)
	}
}

// end tells the hook "" (the call stopped waiting), once, and nothing
// after.
func (n *waitNote) end() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ended {
		n.ended = true
		n.hook("")
	}
}

// noteWaits returns the wait function of a call whose Waiting hook is
// hook, and stop, which ends it: until then, the hook is also told when
// etcd goes silent and when it answers again.
func (c *Client) noteWaits(hook func(string)) (wait func(string), stop func()) {
	if hook == nil {
		return func(string) {}, func() {}
	}
	n := &waitNote{hook: hook}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				n.outage(c.silent())
			case <-done:
				return
			}
		}
	}()
	return n.set, func() {
		close(done)
		n.end()
	}
}
