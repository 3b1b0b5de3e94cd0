package fleet

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

// lock is one hold of a lock queue: under its prefix, the key with the
// oldest create revision owns the lock. It is concurrency.Mutex's protocol
// (client/v3/concurrency/mutex.go: put a lease-bound key if absent, then
// wait for the deletion of the last key created before it — one
// predecessor, so a release wakes one waiter, not all), with what Mutex
// lacks for berth: a timeout on every call, watches that require a
// leader, a wait that ends when the session dies (Mutex keeps waiting
// after its own key is gone) and a wait that can end early when the thing
// waited for is settled by someone else (stop).
//
// Holding the lock is not mutual exclusion by itself: a paused holder may
// believe it holds a lock whose lease already expired. Callers write their
// claims as permanent keys guarded by isOwner, and rev is the fencing
// token.
type lock struct {
	c    *Client
	sess *concurrency.Session
	key  string
	rev  int64 // the key's create revision: the fencing token
}

// errStopped: stop said waiting is moot; the lock is not held.
var errStopped = errors.New("lock wait stopped")

// acquire takes the lock at pfx for sess. Before each wait, and after
// every change of the watched keys, stop is asked whether waiting is
// still needed (and at which revision it read, so no change after that
// read is missed); if it says no, acquire gives up its place and returns
// errStopped.
func (c *Client) acquire(ctx context.Context, sess *concurrency.Session, pfx string, stop func(context.Context) (bool, int64, error), also ...watchSpec) (*lock, error) {
	l := &lock{c: c, sess: sess, key: fmt.Sprintf("%s%x", pfx, sess.Lease())}
	resp, err := c.txnSess(ctx, sess, "enter lock queue",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(l.key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(l.key, c.cfg.Host, clientv3.WithLease(sess.Lease()))},
		clientv3.OpGet(l.key))
	if err != nil {
		return nil, err
	}
	l.rev = resp.Header.Revision
	if !resp.Succeeded { // this session is in the queue already
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			return nil, failure.AsOutage(ErrSessionLost)
		}
		l.rev = kvs[0].CreateRevision
	}
	held := false
	defer func() {
		if !held {
			l.release()
		}
	}()
	for {
		var since int64
		if stop != nil {
			done, rev, err := stop(ctx)
			if err != nil {
				return nil, err
			}
			if done {
				return nil, errStopped
			}
			since = rev
		}
		pred, err := c.get(ctx, pfx, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(l.rev-1), clientv3.WithKeysOnly())...)
		if err != nil {
			return nil, err
		}
		if len(pred.Kvs) == 0 {
			// Nobody before us. Check that our key survived: a session
			// that expired while waiting lost its place.
			own, err := c.get(ctx, l.key, clientv3.WithKeysOnly())
			if err != nil {
				return nil, err
			}
			if len(own.Kvs) == 0 || own.Kvs[0].CreateRevision != l.rev {
				return nil, failure.AsOutage(ErrSessionLost)
			}
			held = true
			return l, nil
		}
		if since == 0 || since > pred.Header.Revision {
			since = pred.Header.Revision
		}
		specs := append([]watchSpec{keyOf(string(pred.Kvs[0].Key))}, also...)
		if err := c.waitChange(ctx, sess, since, specs...); err != nil {
			return nil, err
		}
	}
}

// isOwner is the comparison that guards a write by the lock holder.
func (l *lock) isOwner() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// release deletes the key if it is still ours. It does not depend on the
// caller's context: a lock is released even on shutdown. If etcd does not
// answer, the delete waits in the outbox: while our session lives, a key
// left behind would block every host queued after it.
func (l *lock) release() {
	_, _ = l.c.later(l.c.ctx, "release lock", func(ctx context.Context) error {
		_, err := l.c.txn(ctx, "release lock", []clientv3.Cmp{l.isOwner()}, []clientv3.Op{clientv3.OpDelete(l.key)})
		return err
	})
}
