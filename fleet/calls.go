package fleet

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth.dev/berth/internal/failure"
)

// Every etcd call goes through these: a timeout on each, outages marked
// as such (and noticed, so the first answer after one wakes Run).

// timeout bounds one etcd call.
func (c *Client) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// fail marks an etcd error as an outage, unless the caller gave up: then
// it is the caller's cancellation.
func (c *Client) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("etcd %s: %w", op, ctx.Err())
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The server expired our lease before our client noticed (an
		// overloaded or paused host): txnSess drops the session.
		return failure.AsOutage(fmt.Errorf("etcd %s: %w: %w", op, ErrSessionLost, err))
	}
	if permanent(err) {
		// etcd answered, and no retry will change its answer: a verdict
		// (a result that meets one is dropped, not kept forever at the
		// head of the outbox).
		return failure.AsVerdict(fmt.Errorf("etcd %s: %w", op, err))
	}
	c.down.Store(true)
	return failure.AsOutage(fmt.Errorf("etcd %s: %w", op, err))
}

// permanent reports an etcd error that retrying cannot fix: permission
// denied (the role lacks the key), a request too large or with too many
// operations, an argument etcd refuses, a precondition of its auth. The
// others — unreachable, no leader, timeouts, a full database, an expired
// auth token — are outages: waiting can fix them.
func permanent(err error) bool {
	code := status.Code(err)
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	switch code {
	case codes.PermissionDenied, codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return true
	}
	return false
}

// answered notes that etcd answered a call: the first answer after an
// outage wakes Run, which writes the outbox at once (its backoff reset)
// and keeps the session's lease alive before it can lapse unobserved.
func (c *Client) answered() {
	c.heard()
	if c.down.Load() && c.down.Swap(false) {
		c.kick()
	}
}

// get reads with a timeout.
func (c *Client) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	cli, err := c.client()
	if err != nil {
		return nil, err
	}
	tctx, cancel := c.timeout(ctx)
	defer cancel()
	resp, err := cli.Get(tctx, key, opts...)
	if err != nil {
		return nil, c.fail(ctx, "get "+key, err)
	}
	c.answered()
	return resp, nil
}

// txn commits a transaction with a timeout.
func (c *Client) txn(ctx context.Context, what string, cmps []clientv3.Cmp, then []clientv3.Op, els ...clientv3.Op) (*clientv3.TxnResponse, error) {
	cli, err := c.client()
	if err != nil {
		return nil, err
	}
	fault := c.fault.Load()
	if fault != nil {
		if err := (*fault)(what, false); err != nil {
			return nil, c.fail(ctx, what, err)
		}
	}
	tctx, cancel := c.timeout(ctx)
	defer cancel()
	resp, err := cli.Txn(tctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err == nil && fault != nil {
		err = (*fault)(what, true)
	}
	if err != nil {
		return nil, c.fail(ctx, what, err)
	}
	c.answered()
	return resp, nil
}

// txnSess is txn for a transaction that puts keys on sess's lease. If
// the server says the lease is gone, the session is dead even though its
// Done has not fired yet: drop it (only it — a newer session stays), so
// the next call makes a new one.
func (c *Client) txnSess(ctx context.Context, sess *concurrency.Session, what string, cmps []clientv3.Cmp, then []clientv3.Op, els ...clientv3.Op) (*clientv3.TxnResponse, error) {
	resp, err := c.txn(ctx, what, cmps, then, els...)
	if err != nil && errors.Is(err, rpctypes.ErrLeaseNotFound) {
		c.mu.Lock()
		current := c.sess == sess
		c.mu.Unlock()
		if current {
			sess.Orphan()
		}
	}
	return resp, err
}
