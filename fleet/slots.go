package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
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
	ahead   int    // places ahead of ours, when entering (-1: not counted)
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
	c.step("queued")
	return q.await(ctx, a, v, wait)
}

// await waits in the queue, from view v, until a slot is ours (taken, or
// granted to our place) or the revision is halted. The halt comes first:
// a slot granted before the halt is not used once a read shows the halt
// (it goes back with our place).
func (q *slotQueue) await(ctx context.Context, a *Admission, v *slotView, wait func(string)) error {
	c, k := q.c, q.k
	taken := false
	defer func() {
		if !taken {
			q.leave()
		}
	}()
	got := func(kv *mvccpb.KeyValue, at int64, how string) error {
		taken = true
		a.setSlot(q, kv)
		a.At = at
		c.step(how)
		return nil
	}
	for {
		var wake []watchSpec
		switch {
		case v.halt != nil:
			return failure.AsVerdict(&HaltedError{Halt: *v.halt})
		case v.granted != nil:
			return got(v.granted, v.rev, "granted")
		case !v.queued:
			return failure.AsOutage(ErrSessionLost)
		case v.ahead > 0 && v.ahead < len(v.free):
			// Entering with more free slots than places ahead: each of
			// those ahead has a slot waiting, and so do we — the one at
			// our position. Take it now rather than wait for the head's
			// grants to reach us (a rollout's first wave fills at once).
			kv, at, err := q.takeAt(ctx, v.free[v.ahead])
			if err != nil {
				return err
			}
			if kv != nil {
				return got(kv, at, "took at its place")
			}
			v.ahead = -1
			continue
		case v.pred != "":
			// One watch per waiting host (a thousand of them in a big
			// rollout): the predecessor. A halt reaches the queue through
			// its head, which leaves at once, and so on down the line.
			wait("queued for a deploy slot")
			wake = []watchSpec{keyOf(v.pred)}
		case len(v.free) == 0:
			wait(fmt.Sprintf("waiting for a deploy slot (%d in use, max_parallel %d)", v.busy, q.n))
			wake = []watchSpec{prefixOf(k.slots()), keyOf(q.haltKey)}
		default:
			kv, at, err := q.take(ctx, v)
			if err != nil {
				return err
			}
			if kv != nil {
				return got(kv, at, "took as the head")
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
// waiting. The reads are light (keys only: nothing can have been granted
// to a place this new), since a thousand hosts entering at once are a
// thousand such transactions run one by one in etcd's apply loop. Places
// this session left behind (a leave that did not reach etcd) go in the
// same transaction, and slots granted to them are given back.
func (q *slotQueue) enter(ctx context.Context) (*slotView, error) {
	ours := fmt.Sprintf("%s%016x-", q.k.queue(), q.sess.Lease())
	last2 := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(2)}
	resp, err := q.c.txnSess(ctx, q.sess, "queue for a slot",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(q.qkey), "=", 0)},
		[]clientv3.Op{
			// etcd refuses a delete range that holds a key the same
			// transaction puts: two ranges, around our new key.
			clientv3.OpDelete(ours, clientv3.WithRange(q.qkey)),
			clientv3.OpDelete(q.qkey+"\x00", clientv3.WithRange(clientv3.GetPrefixRangeEnd(ours))),
			clientv3.OpPut(q.qkey, q.c.cfg.Host+" "+q.rev, clientv3.WithLease(q.sess.Lease())),
			clientv3.OpGet(q.k.queue(), last2...),
			clientv3.OpGet(q.k.slots(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
			clientv3.OpGet(q.haltKey),
			clientv3.OpGet(q.qkey, clientv3.WithKeysOnly()),
			clientv3.OpGet(q.k.queue(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		})
	if err != nil {
		return nil, err
	}
	q.qrev = resp.Header.Revision
	r := resp.Responses
	left := r[0].GetResponseDeleteRange().Deleted + r[1].GetResponseDeleteRange().Deleted
	v := q.parse(resp.Header.Revision, r[3:])
	v.ahead = int(r[7].GetResponseRange().Count) - 1 // every place there was created before ours
	if left > 0 {
		// Places of ours left behind: give back what was granted to them.
		sr, err := q.c.get(ctx, q.k.slots(), clientv3.WithPrefix())
		if err != nil {
			return nil, err
		}
		if err := q.giveBack(ctx, sr.Kvs, func(queue string) bool {
			return strings.HasPrefix(queue, ours) && queue != q.qkey
		}); err != nil {
			return nil, err
		}
	}
	return v, nil
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
	v := &slotView{rev: rev, ahead: -1, queued: len(r[3].GetResponseRange().Kvs) > 0, halt: decodeFirst[Halt](r[2].GetResponseRange().Kvs)}
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
