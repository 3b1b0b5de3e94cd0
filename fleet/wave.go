package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

// wave reads the record of the revision's current attempt, or makes it.
// An attempt is one rollout of one revision in one epoch: `berth retry`
// and `berth rollback --fleet` grow the epoch, so rolling out a revision
// again starts from its canary, whatever an earlier attempt's results
// say. When a new revision reaches every host at once (a webhook), one
// host makes the record: the first to put a lease-bound "creating" key;
// the others wait on a watch for the record instead of all reading the
// host list at once. The host that made it then prunes the attempts
// beyond the window the fleet keeps.
// waveRead is what a read learned of the attempt's record: the record,
// and the count of hosts making it.
type waveRead struct {
	record, making *etcdserverpb.RangeResponse
	rev            int64
}

// claimSpread is how long, at most, a host that finds no record and
// nobody making it waits (watching) before it claims the making itself:
// when a webhook reaches 1,000 hosts at once, the first claim is seen by
// most before their turn comes, instead of 1,000 claims racing.
const claimSpread = 300 * time.Millisecond

func (c *Client) wave(ctx context.Context, env string, sess *concurrency.Session, req RolloutRequest, epoch int64,
	pre *waveRead) (*Wave, error) {
	k := c.keys(env)
	att := attemptID(req.Revision, epoch)
	key, creating := k.rollout(att), k.creating(att)
	for {
		// Read first: a transaction that puts goes through raft even when
		// its comparison fails, and a thousand hosts may be here at once.
		// (Admit's first read holds this one when it guessed the epoch.)
		if pre == nil {
			resp, err := c.txn(ctx, "read rollout record", nil, []clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(creating, clientv3.WithCountOnly())})
			if err != nil {
				return nil, err
			}
			pre = &waveRead{record: resp.Responses[0].GetResponseRange(), making: resp.Responses[1].GetResponseRange(), rev: resp.Header.Revision}
		}
		rev := pre.rev
		if kvs := pre.record.Kvs; len(kvs) > 0 {
			return decodeWave(kvs[0].Value, kvs[0].CreateRevision, kvs[0].ModRevision)
		}
		making := pre.making.Count > 0
		pre = nil
		if !making {
			// Nobody makes it yet: watch a random moment for someone
			// else's claim, then claim it.
			wctx, cancel := context.WithTimeout(ctx, rand.N(claimSpread))
			ev, err := c.waitEvent(wctx, sess, rev, keyOf(key), keyOf(creating))
			cancel()
			switch {
			case ev != nil && ev.Type == clientv3.EventTypePut && string(ev.Kv.Key) == key:
				return decodeWave(ev.Kv.Value, ev.Kv.CreateRevision, ev.Kv.ModRevision)
			case ev != nil && ev.Type == clientv3.EventTypePut:
				making, rev = true, ev.Kv.ModRevision // someone claimed it: wait for the record, without reading again
			case ev != nil:
				continue // a claim's end: read again
			case err != nil && ctx.Err() != nil, err != nil && !errors.Is(err, context.DeadlineExceeded):
				return nil, err
			}
		}
		if !making {
			tr, err := c.txnSess(ctx, sess, "claim rollout record",
				[]clientv3.Cmp{
					clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
					clientv3.Compare(clientv3.CreateRevision(creating), "=", 0),
				},
				[]clientv3.Op{clientv3.OpPut(creating, c.cfg.Host, clientv3.WithLease(sess.Lease()))},
				clientv3.OpGet(key))
			if err != nil {
				return nil, err
			}
			if tr.Succeeded {
				break
			}
			if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 { // made already
				return decodeWave(kvs[0].Value, kvs[0].CreateRevision, kvs[0].ModRevision)
			}
			rev = tr.Header.Revision
		}
		// Someone is making it: wait for the record. The record comes in
		// the watch's event: a thousand hosts need not read it again, and
		// each watches only the record (if its maker dies, its lease-bound
		// claim lapses within a TTL; the read after the TTL sees that).
		wctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
		ev, err := c.waitEvent(wctx, sess, rev, keyOf(key))
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			continue // read again
		}
		if err != nil {
			return nil, err
		}
		if ev != nil && ev.Type == clientv3.EventTypePut && string(ev.Kv.Key) == key {
			return decodeWave(ev.Kv.Value, ev.Kv.CreateRevision, ev.Kv.ModRevision)
		}
	}
	defer func() { // kept in the outbox if etcd does not answer: others wait on it
		_, _ = c.later(c.ctx, "drop rollout claim", func(ctx context.Context) error {
			_, err := c.txn(ctx, "drop rollout claim", nil, []clientv3.Op{clientv3.OpDelete(creating)})
			return err
		})
	}()
	known, err := c.hostNames(ctx, env)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(known, c.cfg.Host) {
		known = append(known, c.cfg.Host)
		slices.Sort(known)
	}
	n, err := ParseMaxParallel(req.Policy.MaxParallel, len(known))
	if err != nil {
		return nil, failure.AsVerdict(err)
	}
	canaries, err := c.chooseCanaries(ctx, env, req.Revision, known, nil, req.Policy.Canary)
	if err != nil {
		return nil, err
	}
	w := &Wave{Revision: req.Revision, Attempt: att, MaxParallel: n, MaxParallelSpec: req.Policy.MaxParallel, Pause: req.Policy.Pause,
		Known: known, Created: c.now(), By: c.cfg.Host, Canaries: canaries}
	b, _ := json.Marshal(w)
	lb, _ := json.Marshal(latestRecord{Attempt: att, Revision: req.Revision})
	tr, err := c.txn(ctx, "create rollout record",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, string(b)), clientv3.OpPut(k.latest(), string(lb))},
		clientv3.OpGet(key))
	if err != nil {
		return nil, err
	}
	if !tr.Succeeded {
		kv := tr.Responses[0].GetResponseRange().Kvs[0]
		return decodeWave(kv.Value, kv.CreateRevision, kv.ModRevision)
	}
	w.seq, w.modRev = tr.Header.Revision, tr.Header.Revision
	c.log.Info("rollout started", "env", env, "commit", short(req.Revision), "attempt", att, "canaries", strings.Join(w.Canaries, ","),
		"max_parallel", w.MaxParallel, "hosts", len(known))
	c.prune(ctx, env, len(known))
	return w, nil
}
