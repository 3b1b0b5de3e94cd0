package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// HostState is what one agent publishes about one env. It is written to a
// lease-bound key only when it changes (Clock aside), so a host whose
// lease lapses disappears from the live set and shows as gone.
type HostState struct {
	Env  string `json:"env"`
	Host string `json:"host"`
	// Live is the revision the host serves.
	Live *Commit `json:"live,omitempty"`
	// Deploy is the deploy in progress, if any.
	Deploy *Deploy `json:"deploy,omitempty"`
	// Result is how the last pass ended.
	Result *Result `json:"result,omitempty"`
	// Held says why the host keeps its revision (a rollback hold).
	Held string `json:"held,omitempty"`
	// Failed is the revision this host refuses (it failed here).
	Failed string `json:"failed,omitempty"`
	// Paused is the host's own pause (berth pause without --fleet).
	Paused *PauseInfo `json:"paused,omitempty"`
	// Waiting names the coordinated step the host waits for (a slot,
	// the canaries, a migration on another host).
	Waiting string `json:"waiting,omitempty"`
	// Health is each service's health ("healthy", "unhealthy", …).
	Health  map[string]string `json:"health,omitempty"`
	Version string            `json:"version,omitempty"`
	// Clock is the host's wall clock when the record was written, and
	// ClockSkew its offset from etcd's clock (positive: ahead), measured
	// from the Date header of etcd's /version, to the second.
	Clock     time.Time     `json:"clock"`
	ClockSkew time.Duration `json:"clock_skew"`
}

// Commit is a revision with the commit's author and subject.
type Commit struct {
	Revision string `json:"revision"`
	Author   string `json:"author,omitempty"`
	Subject  string `json:"subject,omitempty"`
}

// Deploy is a deploy in progress.
type Deploy struct {
	Revision string    `json:"revision"`
	Phase    string    `json:"phase"`
	Started  time.Time `json:"started"`
}

// Result is how a pass ended: "ok", "verdict" or "outage", and why.
type Result struct {
	Revision string `json:"revision"`
	Class    string `json:"class"`
	Reason   string `json:"reason,omitempty"`
	// RolledBack: the pass changed the host and undid it (a verdict
	// after the switch). Records written before it read as false.
	RolledBack bool      `json:"rolled_back,omitempty"`
	At         time.Time `json:"at"`
}

// HostStatus is one host as List sees it.
type HostStatus struct {
	HostState
	// Alive: the host's lease-bound record exists. A gone host shows the
	// state it had when it was last seen.
	Alive    bool      `json:"alive"`
	LastSeen time.Time `json:"last_seen"`
}

// seenRecord is the permanent last-seen key: rarely written.
type seenRecord struct {
	At    time.Time `json:"at"`
	State HostState `json:"state"`
}

// forgetAfter is how long a gone host stays listed.
const forgetAfter = 7 * 24 * time.Hour

type publisher struct {
	mu   sync.Mutex
	envs map[string]*pubEnv
}

type pubEnv struct {
	want     HostState
	written  []byte           // the last body written, Clock zeroed
	lease    clientv3.LeaseID // the lease it was written under
	seen     bool             // last-seen written since start
	seenLive string           // the live revision last-seen holds
}

func (p *publisher) init() { p.envs = map[string]*pubEnv{} }

// Publish sets this host's state for env; Run writes it if it changed.
// Env and Host are filled in.
func (c *Client) Publish(env string, st HostState) {
	st.Env, st.Host = env, c.cfg.Host
	c.pub.mu.Lock()
	e := c.pub.envs[env]
	if e == nil {
		e = &pubEnv{}
		c.pub.envs[env] = e
	}
	e.want = st
	c.pub.mu.Unlock()
	c.kick()
}

// publishAll writes every env's host record that changed, or whose lease
// is not the current session's. With seen, it also rewrites last_seen.
func (c *Client) publishAll(ctx context.Context, seen bool) error {
	sess := c.current()
	if sess == nil {
		return ErrSessionLost
	}
	c.pub.mu.Lock()
	envs := make(map[string]pubEnv, len(c.pub.envs))
	for name, e := range c.pub.envs {
		envs[name] = *e
	}
	c.pub.mu.Unlock()
	skew := time.Duration(c.skew.Load())
	var firstErr error
	for name, e := range envs {
		st := e.want
		st.ClockSkew = skew
		st.Clock = time.Time{}
		body, _ := json.Marshal(st)
		live := ""
		if st.Live != nil {
			live = st.Live.Revision
		}
		// last_seen is rewritten rarely: at start, every SeenInterval,
		// and when the live revision changes (so a host that dies shows
		// what it last ran).
		writeSeen := seen || !e.seen || live != e.seenLive
		if bytes.Equal(body, e.written) && e.lease == sess.Lease() && !writeSeen {
			continue
		}
		now := c.now()
		st.Clock = now
		full, _ := json.Marshal(st)
		k := c.keys(name)
		ops := []clientv3.Op{clientv3.OpPut(k.host(c.cfg.Host), string(full), clientv3.WithLease(sess.Lease()))}
		if writeSeen {
			sb, _ := json.Marshal(seenRecord{At: now, State: st})
			ops = append(ops, clientv3.OpPut(k.seen(c.cfg.Host), string(sb)))
		}
		if _, err := c.txnSess(ctx, sess, "publish host state", nil, ops); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		c.pub.mu.Lock()
		if cur := c.pub.envs[name]; cur != nil {
			cur.written, cur.lease = body, sess.Lease()
			if writeSeen {
				cur.seen, cur.seenLive = true, live
			}
		}
		c.pub.mu.Unlock()
	}
	return firstErr
}

// List returns every host of env: the live ones, and the gone ones (no
// lease-bound record) seen within a week, sorted by name.
func (c *Client) List(ctx context.Context, env string) ([]HostStatus, error) {
	k := c.keys(env)
	resp, err := c.txn(ctx, "list hosts", nil, []clientv3.Op{
		clientv3.OpGet(k.hosts(), clientv3.WithPrefix()),
		clientv3.OpGet(k.seens(), clientv3.WithPrefix()),
	})
	if err != nil {
		return nil, err
	}
	return mergeHosts(resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs, c.now(), nil), nil
}

// mergeHosts joins the live host records with the last-seen ones: a host
// without a live record is gone, shown as it was last seen (for a week).
func mergeHosts(hostKVs, seenKVs []*mvccpb.KeyValue, now time.Time, dc *decodeCache) []HostStatus {
	byName := make(map[string]*HostStatus, len(hostKVs))
	for _, kv := range hostKVs {
		st, ok := decode[HostState](dc, kv)
		if !ok {
			continue
		}
		byName[st.Host] = &HostStatus{HostState: st, Alive: true, LastSeen: st.Clock}
	}
	for _, kv := range seenKVs {
		sr, ok := decode[seenRecord](dc, kv)
		if !ok {
			continue
		}
		h := byName[sr.State.Host]
		switch {
		case h != nil:
			if sr.At.After(h.LastSeen) {
				h.LastSeen = sr.At
			}
		case now.Sub(sr.At) < forgetAfter:
			byName[sr.State.Host] = &HostStatus{HostState: sr.State, LastSeen: sr.At}
		}
	}
	out := make([]HostStatus, 0, len(byName))
	for _, h := range byName {
		if h.Alive {
			// Alive now: last seen is now, whatever was last written.
			h.LastSeen = now
		}
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b HostStatus) int { return strings.Compare(a.Host, b.Host) })
	return out
}

// Forget removes a gone host's last-seen record (a host retired for good).
func (c *Client) Forget(ctx context.Context, env, host string) error {
	k := c.keys(env)
	_, err := c.txn(ctx, "forget host",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.host(host)), "=", 0)},
		[]clientv3.Op{clientv3.OpDelete(k.seen(host))})
	return err
}

// pruneSeen forgets hosts gone for more than a week, once a day per agent.
func (c *Client) pruneSeen(ctx context.Context) {
	c.pub.mu.Lock()
	envs := make([]string, 0, len(c.pub.envs))
	for name := range c.pub.envs {
		envs = append(envs, name)
	}
	c.pub.mu.Unlock()
	for _, env := range envs {
		k := c.keys(env)
		resp, err := c.get(ctx, k.seens(), clientv3.WithPrefix())
		if err != nil {
			return
		}
		for _, kv := range resp.Kvs {
			var sr seenRecord
			if json.Unmarshal(kv.Value, &sr) != nil || c.now().Sub(sr.At) < forgetAfter {
				continue
			}
			// Only if it did not come back meanwhile.
			_, _ = c.txn(ctx, "prune last seen",
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
				[]clientv3.Op{clientv3.OpDelete(string(kv.Key))})
			c.log.Info("forgot a host gone for a week", "env", env, "gone_host", sr.State.Host, "last_seen", sr.At)
		}
	}
}

// aliveHosts reads the live host records of env.
func (c *Client) aliveHosts(ctx context.Context, env string) (map[string]HostState, error) {
	resp, err := c.get(ctx, c.keys(env).hosts(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make(map[string]HostState, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var st HostState
		if json.Unmarshal(kv.Value, &st) == nil {
			out[st.Host] = st
		}
	}
	return out, nil
}

func (h HostStatus) String() string {
	live := "-"
	if h.Live != nil {
		live = h.Live.Revision
	}
	return fmt.Sprintf("%s alive=%t live=%s", h.Host, h.Alive, live)
}
