package fleet

import (
	"context"
	"encoding/json"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Finish records how the admitted deploy ended: the host's result for the
// revision (permanent), a halt on failure, and the slot freed. If etcd is
// unreachable the records are written later, from the outbox.
//
// A zero Admission (a test fake's) finishes as a no-op.
func (a *Admission) Finish(ctx context.Context, o Outcome, reason string) error {
	if a == nil || a.finished || a.c == nil {
		return nil
	}
	a.finished = true
	if a.lost != nil && a.lost() {
		a.c.log.Warn("deploy finished after its slot was lost", "env", a.env, "commit", short(a.Revision), "slot", a.Slot)
	}
	c, k, rev, host := a.c, a.c.keys(a.env), a.Revision, a.c.cfg.Host
	// A joining host deployed the good revision: it gives its slot back,
	// and neither counts in the rollout nor halts the good revision.
	var ops []clientv3.Op
	if o != Abandoned && !a.Joining {
		b, _ := json.Marshal(doneRecord{Host: host, OK: o == Succeeded, Reason: reason, At: c.now()})
		ops = append(ops, clientv3.OpPut(k.done(a.wave.Attempt, host), string(b)))
	}
	var halt []byte
	if o == Failed && !a.Joining {
		halt, _ = json.Marshal(Halt{Revision: rev, Host: host, Reason: reason, At: c.now()})
	}
	slotKey, slotRev := a.slotKey, a.slotRev
	queued, err := c.later(ctx, "deploy result "+short(rev), func(ctx context.Context) error {
		if halt != nil {
			_, err := c.txn(ctx, "halt revision",
				[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.halt(rev)), "=", 0)},
				[]clientv3.Op{clientv3.OpPut(k.halt(rev), string(halt))})
			if err != nil {
				return err
			}
		}
		if slotKey == "" {
			if len(ops) == 0 {
				return nil
			}
			_, err := c.txn(ctx, "record deploy result", nil, ops)
			return err
		}
		_, err := c.txn(ctx, "record deploy result",
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(slotKey), "=", slotRev)},
			append(slices.Clone(ops), clientv3.OpDelete(slotKey)), ops...)
		return err
	})
	if err != nil {
		return err
	}
	if halt != nil {
		c.log.Warn("revision halted fleet-wide", "env", a.env, "commit", short(rev), "reason", reason)
	}
	if o == Succeeded && !queued && !a.Joining {
		c.maybeGood(ctx, a.env, a.wave)
	}
	return nil
}

// maybeGood marks the revision as the fleet's last good one when its
// rollout is complete. It first counts results (cheap), and reads hosts
// only when the count is close to the number of known hosts; a rollout
// that completes because hosts died is noticed by the next joining host
// or status read instead.
func (c *Client) maybeGood(ctx context.Context, env string, w *Wave) {
	k := c.keys(env)
	resp, err := c.get(ctx, k.dones(w.Attempt), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || int(resp.Count) < len(w.Known)-len(w.Known)/10-1 {
		return
	}
	if done, err := c.complete(ctx, env, w); err == nil && done {
		_ = c.setGood(ctx, env, w)
	}
}

// complete reports whether every host known when the rollout started is
// live on the revision, gone, or deliberately keeping its revision
// (paused or held), with no halt. A complete rollout also becomes the
// fleet's good revision.
func (c *Client) complete(ctx context.Context, env string, w *Wave) (bool, error) {
	k := c.keys(env)
	resp, err := c.txn(ctx, "read rollout results", nil, []clientv3.Op{
		clientv3.OpGet(k.dones(w.Attempt), clientv3.WithPrefix()),
		clientv3.OpGet(k.hosts(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(k.halt(w.Revision), clientv3.WithCountOnly()),
	})
	if err != nil {
		return false, err
	}
	if resp.Responses[2].GetResponseRange().Count > 0 {
		return false, nil
	}
	ok := map[string]bool{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var d doneRecord
		if json.Unmarshal(kv.Value, &d) == nil && d.OK {
			ok[d.Host] = true
		}
	}
	alive := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		alive[string(kv.Key)] = true
	}
	for _, h := range w.Known {
		if ok[h] || !alive[k.host(h)] {
			continue
		}
		// Alive without a result: fine if it is live on the revision
		// already, or keeps its revision on purpose. The first host that
		// is neither ends the check (mid-rollout, that is at once).
		hr, err := c.get(ctx, k.host(h))
		if err != nil {
			return false, err
		}
		st := decodeFirst[HostState](hr.Kvs)
		if st != nil && !(st.Live != nil && st.Live.Revision == w.Revision) && st.Paused == nil && st.Held == "" {
			return false, nil
		}
	}
	return true, c.setGood(ctx, env, w)
}

// setGood makes w's revision the good one, unless a newer revision is.
func (c *Client) setGood(ctx context.Context, env string, w *Wave) error {
	key := c.keys(env).good()
	for range 3 {
		resp, err := c.get(ctx, key)
		if err != nil {
			return err
		}
		var mod int64
		if len(resp.Kvs) > 0 {
			var g Good
			if json.Unmarshal(resp.Kvs[0].Value, &g) == nil && g.Seq >= w.seq {
				return nil
			}
			mod = resp.Kvs[0].ModRevision
		}
		b, _ := json.Marshal(Good{Revision: w.Revision, Seq: w.seq, At: c.now()})
		tr, err := c.txn(ctx, "set good revision",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", mod)},
			[]clientv3.Op{clientv3.OpPut(key, string(b))})
		if err != nil {
			return err
		}
		if tr.Succeeded {
			c.log.Info("rollout complete: the fleet's good revision", "env", env, "commit", short(w.Revision))
			return nil
		}
	}
	return nil
}

// GoodRevision is the fleet's last good revision, or nil.
func (c *Client) GoodRevision(ctx context.Context, env string) (*Good, error) {
	resp, err := c.get(ctx, c.keys(env).good())
	if err != nil {
		return nil, err
	}
	return decodeFirst[Good](resp.Kvs), nil
}

// Wave reads the record of the revision's current attempt (the rollout
// of it in the current epoch), or nil.
func (c *Client) Wave(ctx context.Context, env, rev string) (*Wave, error) {
	k := c.keys(env)
	er, err := c.get(ctx, k.epoch(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var epoch int64
	if len(er.Kvs) > 0 {
		epoch = er.Kvs[0].ModRevision
	}
	resp, err := c.get(ctx, k.rollout(attemptID(rev, epoch)))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	return decodeWave(resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, resp.Kvs[0].ModRevision)
}

// HaltRevision halts rev fleet-wide by hand (an operator's halt).
func (c *Client) HaltRevision(ctx context.Context, env, rev, by, reason string) error {
	k := c.keys(env)
	b, _ := json.Marshal(Halt{Revision: rev, Host: by, Reason: reason, At: c.now()})
	_, err := c.txn(ctx, "halt revision",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.halt(rev)), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(k.halt(rev), string(b))})
	return err
}

// Halts lists env's halted revisions.
func (c *Client) Halts(ctx context.Context, env string) ([]Halt, error) {
	resp, err := c.get(ctx, c.keys(env).halts(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Halt
	for _, kv := range resp.Kvs {
		var h Halt
		if json.Unmarshal(kv.Value, &h) == nil {
			out = append(out, h)
		}
	}
	return out, nil
}
