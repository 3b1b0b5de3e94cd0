package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Taking deploy slots: the head of the queue takes the first free slot and
// grants the others to the hosts right behind it, in one transaction; a
// host entering the queue with more free slots than places ahead of it
// takes the one at its position.

// maxGrants bounds the slots granted in one transaction: etcd refuses a
// transaction of more than --max-txn-ops (128 by default) compares or
// operations; the take itself is three of each and each grant two
// (3 + 2×60 = 123). A lower --max-txn-ops makes the head take its slot
// alone.
const maxGrants = 60

// grantee is a host queued behind the head, for the same revision.
type grantee struct {
	key   string
	crev  int64
	lease clientv3.LeaseID
	host  string
}

// take takes the first free slot for us and grants the others to the
// hosts queued right behind us. It returns our slot and the revision it
// was taken at, or nil if the view was stale (read again).
func (q *slotQueue) take(ctx context.Context, v *slotView) (*mvccpb.KeyValue, int64, error) {
	var gs []grantee
	if len(v.free) > 1 {
		resp, err := q.c.get(ctx, q.k.queue(), clientv3.WithPrefix(), clientv3.WithMinCreateRev(q.qrev+1),
			clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(int64(min(len(v.free)-1, maxGrants))))
		if err != nil {
			return nil, 0, err
		}
		for _, kv := range resp.Kvs {
			host, rev, _ := strings.Cut(string(kv.Value), " ")
			lease, err := strconv.ParseUint(strings.SplitN(strings.TrimPrefix(string(kv.Key), q.k.queue()), "-", 2)[0], 16, 64)
			if rev != q.rev || err != nil {
				break // another revision has its own max_parallel: let it ask
			}
			gs = append(gs, grantee{key: string(kv.Key), crev: kv.CreateRevision, lease: clientv3.LeaseID(lease), host: host})
		}
	}
	for {
		now := q.c.now()
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(q.haltKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(q.qkey), "=", q.qrev),
		}
		var ops []clientv3.Op
		give := func(i int, host, queue, by string, lease clientv3.LeaseID) {
			sk := q.k.slot(v.free[i])
			b, _ := json.Marshal(slotValue{Host: host, Revision: q.rev, Since: now, Queue: queue, By: by})
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(sk), "=", 0))
			ops = append(ops, clientv3.OpPut(sk, string(b), clientv3.WithLease(lease)), clientv3.OpDelete(queue))
		}
		give(0, q.c.cfg.Host, q.qkey, "", q.sess.Lease())
		for i, g := range gs {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(g.key), "=", g.crev))
			give(i+1, g.host, g.key, q.c.cfg.Host, g.lease)
		}
		ops = append(ops, clientv3.OpGet(q.k.slot(v.free[0])))
		var resp *clientv3.TxnResponse
		var err error
		if len(gs) == 0 {
			resp, err = q.c.txnSess(ctx, q.sess, "take a slot", cmps, ops)
		} else {
			resp, err = q.c.txn(ctx, "take slots", cmps, ops)
			if err != nil && (errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrTooManyOps)) {
				// A grantee's lease is gone (or ours), or etcd runs with
				// a lower --max-txn-ops: take ours alone.
				q.c.log.Debug("granting slots failed; taking one", "error", err)
				gs = nil
				continue
			}
		}
		if err != nil {
			return nil, 0, err
		}
		if !resp.Succeeded && len(gs) > 0 {
			// A grantee left its place (or a slot went) since the read:
			// take ours alone now, so the queue always moves; the hosts
			// behind are granted by the next head.
			gs = nil
			continue
		}
		if !resp.Succeeded {
			return nil, 0, nil
		}
		if len(gs) > 0 {
			q.c.log.Debug("deploy slots granted to the hosts queued behind", "count", len(gs))
		}
		rs := resp.Responses
		return rs[len(rs)-1].GetResponseRange().Kvs[0], resp.Header.Revision, nil
	}
}

// takeAt takes slot i for our place, if it is free, our place is still
// there and the revision is not halted; nil if not.
func (q *slotQueue) takeAt(ctx context.Context, i int) (*mvccpb.KeyValue, int64, error) {
	sk := q.k.slot(i)
	b, _ := json.Marshal(slotValue{Host: q.c.cfg.Host, Revision: q.rev, Since: q.c.now(), Queue: q.qkey})
	resp, err := q.c.txnSess(ctx, q.sess, "take a slot",
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(q.haltKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(q.qkey), "=", q.qrev),
			clientv3.Compare(clientv3.CreateRevision(sk), "=", 0),
		},
		[]clientv3.Op{clientv3.OpPut(sk, string(b), clientv3.WithLease(q.sess.Lease())), clientv3.OpDelete(q.qkey), clientv3.OpGet(sk)})
	if err != nil || !resp.Succeeded {
		return nil, 0, err
	}
	rs := resp.Responses
	return rs[len(rs)-1].GetResponseRange().Kvs[0], resp.Header.Revision, nil
}
