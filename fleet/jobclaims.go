package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// A claim's commit can be ambiguous: etcd applies the transaction, but its
// reply is lost (a timeout, a cut connection, a leader change). The claim
// then exists — a permanent record saying "running" and a lease-bound
// `active` key on this host's lease — with nothing behind it. Left so, the
// time never runs, and with `concurrency: forbid` every later time of the
// job is skipped on every host while this host's lease lives.
//
// So each claim carries a nonce, remembered per scheduled time while its
// outcome is unknown: the next read (in the same call, or the caller's
// retry) that finds the record with this nonce adopts it — the host runs
// the time with that record's token. A claim nobody comes back for within
// claimSettleAfter is settled by Run: its record is marked skipped and its
// `active` key deleted. Nothing stays "running" with no run behind it.

// claimSettleAfter is how long an ambiguous claim waits for its caller to
// adopt it before Run settles it as skipped (a variable for tests); a
// claim of a later time of the same job settles it at once.
var claimSettleAfter = 10 * time.Second

type pendingClaims struct {
	mu sync.Mutex
	m  map[string]*pendingClaim // by run key
}

type pendingClaim struct {
	env, job  string
	t         time.Time
	nonce     string
	activeKey string
	due       time.Time
}

// claimNonce is the nonce of this host's claim of t: the one of an
// earlier claim whose outcome is unknown, or a new one.
func (c *Client) claimNonce(env, job string, t time.Time) string {
	key := c.keys(env).jobRun(job, t)
	c.claims.mu.Lock()
	defer c.claims.mu.Unlock()
	if p := c.claims.m[key]; p != nil {
		return p.nonce
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// notePending remembers that the claim of runKey (with nonce) may have
// landed.
func (c *Client) notePending(env, job string, t time.Time, nonce string) {
	k := c.keys(env)
	c.claims.mu.Lock()
	defer c.claims.mu.Unlock()
	if c.claims.m == nil {
		c.claims.m = map[string]*pendingClaim{}
	}
	if c.claims.m[k.jobRun(job, t)] == nil {
		c.claims.m[k.jobRun(job, t)] = &pendingClaim{env: env, job: job, t: t, nonce: nonce, activeKey: k.jobActive(job, t),
			due: time.Now().Add(claimSettleAfter)}
	}
	c.kick()
}

// takePending removes runKey's pending claim if it has nonce; whoever
// takes it (the adopting call, Run's settling) owns its outcome.
func (c *Client) takePending(runKey, nonce string) *pendingClaim {
	c.claims.mu.Lock()
	defer c.claims.mu.Unlock()
	p := c.claims.m[runKey]
	if p == nil || p.nonce != nonce {
		return nil
	}
	delete(c.claims.m, runKey)
	return p
}

func (c *Client) dropPending(runKey, nonce string) { c.takePending(runKey, nonce) }

// putBack returns a pending claim whose handling met an outage.
func (c *Client) putBack(runKey string, p *pendingClaim) {
	c.claims.mu.Lock()
	defer c.claims.mu.Unlock()
	if c.claims.m[runKey] == nil {
		c.claims.m[runKey] = p
	}
}

// adoptClaim takes over this host's own claim, found by its nonce: the
// record (untouched since the claim) is ours, and its `active` key is put
// again on the live session's lease if it went.
func (c *Client) adoptClaim(ctx context.Context, sess *concurrency.Session, env string, p JobPolicy, runKey, activeKey string,
	kv *mvccpb.KeyValue, rec JobRecord) (*JobClaim, error) {
	pc := c.takePending(runKey, rec.Nonce)
	if pc == nil || rec.Status != JobRunning || kv.ModRevision != kv.CreateRevision {
		return nil, fmt.Errorf("%w: this host's own claim, settled already", ErrClaimed)
	}
	tr, err := c.txnSess(ctx, sess, "adopt job claim",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(runKey), "=", kv.CreateRevision)},
		[]clientv3.Op{
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(activeKey), "=", 0)},
				[]clientv3.Op{clientv3.OpPut(activeKey, c.cfg.Host, clientv3.WithLease(sess.Lease()))}, nil),
			clientv3.OpGet(activeKey),
		})
	if err != nil {
		c.putBack(runKey, pc)
		return nil, err
	}
	active := tr.Responses[len(tr.Responses)-1].GetResponseRange().Kvs
	if !tr.Succeeded || len(active) == 0 {
		return nil, fmt.Errorf("%w: this host's own claim changed", ErrClaimed)
	}
	rec.Token = kv.CreateRevision
	c.log.Info("adopted this host's own job claim, whose commit's reply was lost: running it with the claim's token",
		"env", env, "job", rec.Job, "scheduled", rec.Scheduled, "token", rec.Token)
	jc := &JobClaim{Job: rec.Job, Scheduled: rec.Scheduled, Token: rec.Token, c: c, env: env, policy: p,
		runKey: runKey, activeKey: activeKey, activeRev: active[0].CreateRevision, rec: rec}
	jc.lost = c.watchLoss(sess, "job runner lost its etcd lease mid-run: the run goes on and is not repeated elsewhere; its record will say so",
		"env", env, "job", rec.Job, "scheduled", rec.Scheduled)
	return jc, nil
}

// settleClaims marks the ambiguous claims nobody came back for as skipped
// and frees their `active` keys. It returns when the next one is due
// (zero: none).
func (c *Client) settleClaims(ctx context.Context) time.Time {
	now := time.Now()
	c.claims.mu.Lock()
	var due []string
	var next time.Time
	for k, p := range c.claims.m {
		if !p.due.After(now) {
			due = append(due, k)
		} else if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
	}
	c.claims.mu.Unlock()
	c.settleEach(ctx, due, func(p *pendingClaim) {
		p.due = now.Add(time.Second)
		if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
	})
	return next
}

// settleEach settles the pending claims of keys still pending; one that
// meets an outage is put back, after failed(p) when it is not nil.
func (c *Client) settleEach(ctx context.Context, keys []string, failed func(*pendingClaim)) {
	for _, k := range keys {
		c.claims.mu.Lock()
		p := c.claims.m[k]
		c.claims.mu.Unlock()
		if p == nil || c.takePending(k, p.nonce) == nil {
			continue
		}
		if err := c.settleClaim(ctx, k, p); err != nil {
			if failed != nil {
				failed(p)
			}
			c.putBack(k, p)
		}
	}
}

// settleEarlier settles this host's pending claims of job's times before
// t (best effort: one that meets an outage stays pending for Run).
func (c *Client) settleEarlier(ctx context.Context, env, job string, t time.Time) {
	c.claims.mu.Lock()
	var keys []string
	for k, p := range c.claims.m {
		if p.env == env && p.job == job && p.t.Before(t) {
			keys = append(keys, k)
		}
	}
	c.claims.mu.Unlock()
	c.settleEach(ctx, keys, nil)
}

func (c *Client) settleClaim(ctx context.Context, runKey string, p *pendingClaim) error {
	resp, err := c.get(ctx, runKey)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return nil // the claim never landed
	}
	kv := resp.Kvs[0]
	rec := decodeFirst[JobRecord](resp.Kvs)
	if rec == nil || rec.Nonce != p.nonce || rec.Status != JobRunning || kv.ModRevision != kv.CreateRevision {
		return nil // another host's, or settled
	}
	rec.Status, rec.Ended = "skipped", c.now()
	rec.Reason = "not run: the claim's commit was ambiguous (etcd's reply was lost) and its scheduler had given the time up"
	b, _ := json.Marshal(rec)
	if _, err := c.txn(ctx, "settle job claim",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(runKey), "=", kv.CreateRevision)},
		[]clientv3.Op{clientv3.OpPut(runKey, string(b)), clientv3.OpDelete(p.activeKey)}); err != nil {
		return err
	}
	c.log.Warn("a job claim whose commit was ambiguous was not adopted: recorded as skipped, its active mark freed",
		"env", p.env, "job", p.job, "scheduled", p.t)
	return nil
}
