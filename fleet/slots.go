package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

// etcd has no semaphore: deploy slots are numbered keys slot/0 …
// slot/N-1, each bound to its holder's lease and taken by
// compare-and-swap. Hosts wait for one in a queue of lease-bound keys,
// each watching only the key before its own; only the head watches the
// slots. So a freed slot wakes one host, never the fleet.
//
// A rollout is a chain of slot handoffs, and one handoff per round trip
// would make a 1,000-host rollout slow: when the head sees k free slots,
// it takes one and grants the others, in the same transaction, to the k-1
// hosts queued right behind it (putting each slot on the grantee's own
// lease, so it is still bound to the grantee's life). Each grantee wakes
// as its predecessor leaves the queue and finds the slot granted to its
// queue place.

// slotValue is a slot key's value.
type slotValue struct {
	Host     string    `json:"host"`
	Revision string    `json:"revision"`
	Since    time.Time `json:"since"`
	// Queue is the queue place the slot was given to; By the host that
	// granted it, when not the holder itself.
	Queue string `json:"queue"`
	By    string `json:"by,omitempty"`
}

// slotQueue is one host's place in the env's slot queue.
type slotQueue struct {
	c       *Client
	k       keys
	sess    *concurrency.Session
	rev     string
	haltKey string
	n       int
	qkey    string
	qrev    int64
}

// slotView is what the queue place sees at one revision.
type slotView struct {
	rev     int64
	pred    string // the queue key before ours, if any
	free    []int
	busy    int
	halt    *Halt
	queued  bool             // our queue key is there
	granted *mvccpb.KeyValue // a slot granted to our place
}

// takeSlot queues for a deploy slot and takes one (or is granted one).
// The take checks the halt in the same transaction, so no host starts a
// halted revision after the halt.
func (c *Client) takeSlot(ctx context.Context, env string, sess *concurrency.Session, a *Admission, wait func(string)) error {
	k := c.keys(env)
	// The halt checked is the deployed revision's: a joining host deploys
	// the good revision under the rollout's max_parallel.
	q := &slotQueue{c: c, k: k, sess: sess, rev: a.Revision, haltKey: k.halt(a.Revision), n: a.wave.MaxParallel,
		qkey: fmt.Sprintf("%s%016x-%d", k.queue(), sess.Lease(), c.token())}
	if q.n <= 0 { // no limit: only the halt check
		resp, err := c.get(ctx, q.haltKey)
		if err != nil {
			return err
		}
		if h := decodeFirst[Halt](resp.Kvs); h != nil {
			return failure.AsVerdict(&HaltedError{Halt: *h})
		}
		a.At = resp.Header.Revision
		return nil
	}
	v, err := q.enter(ctx)
	if err != nil {
		return err
	}
	return q.await(ctx, a, v, wait)
}

// await waits in the queue, from view v, until a slot is ours (taken, or
// granted to our place) or the revision is halted. The halt comes first:
// a slot granted before the halt is not used once a read shows the halt
// (it goes back with our place), and every place in the queue watches the
// halt, so a halt empties the queue at once.
func (q *slotQueue) await(ctx context.Context, a *Admission, v *slotView, wait func(string)) error {
	c, k := q.c, q.k
	taken := false
	defer func() {
		if !taken {
			q.leave()
		}
	}()
	for {
		var wake []watchSpec
		switch {
		case v.halt != nil:
			return failure.AsVerdict(&HaltedError{Halt: *v.halt})
		case v.granted != nil:
			taken = true
			a.setSlot(q, v.granted)
			a.At = v.rev
			return nil
		case !v.queued:
			return failure.AsOutage(ErrSessionLost)
		case v.pred != "":
			wait("queued for a deploy slot")
			wake = []watchSpec{keyOf(v.pred), keyOf(q.haltKey)}
		case len(v.free) == 0:
			wait(fmt.Sprintf("waiting for a deploy slot (%d in use, max_parallel %d)", v.busy, q.n))
			wake = []watchSpec{prefixOf(k.slots()), keyOf(q.haltKey)}
		default:
			kv, at, err := q.take(ctx, v)
			if err != nil {
				return err
			}
			if kv != nil {
				taken = true
				a.setSlot(q, kv)
				a.At = at
				return nil
			}
		}
		if wake != nil {
			if err := c.waitChange(ctx, q.sess, v.rev, wake...); err != nil {
				return err
			}
		}
		var err error
		if v, err = q.reread(ctx); err != nil {
			return err
		}
	}
}

func (a *Admission) setSlot(q *slotQueue, kv *mvccpb.KeyValue) {
	key := string(kv.Key)
	a.Slot, _ = strconv.Atoi(strings.TrimPrefix(key, q.k.slots()))
	a.slotKey, a.slotRev = key, kv.CreateRevision
	a.lost = q.c.watchLoss(q.sess, "deploy slot lost mid-deploy (lease expired): another host may take it, so max_parallel+1 hosts may deploy at once",
		"env", a.env, "commit", short(a.Revision), "slot", a.Slot)
}

// views are the reads of a view: the queue key before ours (pred), the
// slots, the halt, our own queue key.
func (q *slotQueue) views(pred []clientv3.OpOption, extra ...clientv3.OpOption) []clientv3.Op {
	with := func(opts ...clientv3.OpOption) []clientv3.OpOption { return append(opts, extra...) }
	return []clientv3.Op{
		clientv3.OpGet(q.k.queue(), with(pred...)...),
		clientv3.OpGet(q.k.slots(), with(clientv3.WithPrefix())...),
		clientv3.OpGet(q.haltKey, extra...),
		clientv3.OpGet(q.qkey, with(clientv3.WithKeysOnly())...),
	}
}

// enter puts our queue key and reads the view in the same transaction:
// the head goes straight to taking a slot, the others straight to
// waiting. Places this session left behind (a leave that did not reach
// etcd) go in the same transaction, and slots granted to them are given
// back.
func (q *slotQueue) enter(ctx context.Context) (*slotView, error) {
	last2 := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(2)}
	ours := fmt.Sprintf("%s%016x-", q.k.queue(), q.sess.Lease())
	resp, err := q.c.txnSess(ctx, q.sess, "queue for a slot",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(q.qkey), "=", 0)},
		append([]clientv3.Op{
			// etcd refuses a delete range that holds a key the same
			// transaction puts: two ranges, around our new key.
			clientv3.OpDelete(ours, clientv3.WithRange(q.qkey)),
			clientv3.OpDelete(q.qkey+"\x00", clientv3.WithRange(clientv3.GetPrefixRangeEnd(ours))),
			clientv3.OpPut(q.qkey, q.c.cfg.Host+" "+q.rev, clientv3.WithLease(q.sess.Lease())),
		}, q.views(last2)...))
	if err != nil {
		return nil, err
	}
	q.qrev = resp.Header.Revision
	r := resp.Responses[3:]
	if err := q.giveBack(ctx, r[1].GetResponseRange().Kvs, func(queue string) bool {
		return strings.HasPrefix(queue, ours) && queue != q.qkey
	}); err != nil {
		return nil, err
	}
	return q.parse(resp.Header.Revision, r), nil
}

// reread reads the view again after a wake. It reads serializably (from
// the member, without a round to the leader): a rollout is a chain of
// such reads. A stale view is safe — a take is a compare-and-swap on the
// slot, the halt and our place, and a wait on a stale view wakes on the
// change it missed — provided the member has applied our own queue entry;
// otherwise the view is read again from the leader.
func (q *slotQueue) reread(ctx context.Context) (*slotView, error) {
	pred := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(1), clientv3.WithMaxCreateRev(q.qrev - 1)}
	resp, err := q.c.txn(ctx, "read slots", nil, q.views(pred, clientv3.WithSerializable()))
	if err == nil && resp.Header.Revision >= q.qrev {
		if v := q.parse(resp.Header.Revision, resp.Responses); v.queued {
			return v, nil
		}
	}
	resp, err = q.c.txn(ctx, "read slots", nil, q.views(pred))
	if err != nil {
		return nil, err
	}
	return q.parse(resp.Header.Revision, resp.Responses), nil
}

func (q *slotQueue) parse(rev int64, r []*pb.ResponseOp) *slotView {
	v := &slotView{rev: rev, queued: len(r[3].GetResponseRange().Kvs) > 0, halt: decodeFirst[Halt](r[2].GetResponseRange().Kvs)}
	for _, kv := range r[0].GetResponseRange().Kvs {
		if kv.CreateRevision < q.qrev {
			v.pred = string(kv.Key)
			break
		}
	}
	used := map[string]bool{}
	for _, kv := range r[1].GetResponseRange().Kvs {
		used[string(kv.Key)] = true
		var sv slotValue
		if json.Unmarshal(kv.Value, &sv) == nil && sv.Queue == q.qkey {
			v.granted = kv
		}
	}
	v.busy = len(used)
	for i := range q.n {
		if !used[q.k.slot(i)] {
			v.free = append(v.free, i)
		}
	}
	return v
}

// maxGrants bounds the slots granted in one transaction: etcd refuses a
// transaction of more than --max-txn-ops (128 by default) compares or
// operations, and each grant is two of each.
const maxGrants = 40

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

// leave gives up our queue place, and a slot granted to it that we will
// not use. It does not depend on the caller's context, and if etcd does
// not answer it waits in the outbox: while our session lives, a place
// left behind would block every host queued after it, and a slot granted
// to it would be lost to the fleet.
func (q *slotQueue) leave() {
	_, _ = q.c.later(q.c.ctx, "leave slot queue", func(ctx context.Context) error {
		resp, err := q.c.txn(ctx, "leave slot queue", nil, []clientv3.Op{
			clientv3.OpDelete(q.qkey),
			clientv3.OpGet(q.k.slots(), clientv3.WithPrefix()),
		})
		if err != nil {
			return err
		}
		return q.giveBack(ctx, resp.Responses[1].GetResponseRange().Kvs, func(queue string) bool { return queue == q.qkey })
	})
}

// giveBack deletes the slots among kvs granted to a queue place that
// mine says is ours but unused.
func (q *slotQueue) giveBack(ctx context.Context, kvs []*mvccpb.KeyValue, mine func(queue string) bool) error {
	for _, kv := range kvs {
		var sv slotValue
		if json.Unmarshal(kv.Value, &sv) != nil || !mine(sv.Queue) {
			continue
		}
		if _, err := q.c.txn(ctx, "give back a granted slot",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
			[]clientv3.Op{clientv3.OpDelete(string(kv.Key))}); err != nil {
			return err
		}
		q.c.log.Info("gave back a deploy slot granted to a queue place given up", "slot", string(kv.Key))
	}
	return nil
}
