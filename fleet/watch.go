package fleet

import (
	"context"
	"errors"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

// watchSpec is one key or prefix to wait on.
type watchSpec struct {
	key    string
	prefix bool
}

func keyOf(k string) watchSpec    { return watchSpec{key: k} }
func prefixOf(p string) watchSpec { return watchSpec{key: p, prefix: true} }

var errWatchClosed = errors.New("watch closed")

// waitChange blocks until any of specs changes after revision rev, the
// session ends (ErrSessionLost, an outage), or ctx ends. Watches require a
// leader, so a member cut off from the majority does not leave them
// silent. A failed watch (no leader, compacted, closed) also returns nil:
// the caller reads again, which both lists afresh after a compaction and
// reports an outage if etcd is gone. The caller's loop is always
// read → decide → waitChange(read's revision).
func (c *Client) waitChange(ctx context.Context, sess *concurrency.Session, rev int64, specs ...watchSpec) error {
	_, err := c.waitEvent(ctx, sess, rev, specs...)
	return err
}

// waitEvent is waitChange that also returns the first change seen (nil
// when the watch ended without one: read again).
func (c *Client) waitEvent(ctx context.Context, sess *concurrency.Session, rev int64, specs ...watchSpec) (*clientv3.Event, error) {
	cli, err := c.client()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	type result struct {
		ev  *clientv3.Event
		err error
	}
	merged := make(chan result, len(specs))
	for _, s := range specs {
		opts := []clientv3.OpOption{clientv3.WithRev(rev + 1)}
		if s.prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		ch := cli.Watch(wctx, s.key, opts...)
		go func() {
			for wr := range ch {
				if err := wr.Err(); err != nil {
					merged <- result{err: err}
					return
				}
				if len(wr.Events) > 0 {
					merged <- result{ev: wr.Events[0]}
					return
				}
			}
			merged <- result{err: errWatchClosed}
		}()
	}
	var sessDone <-chan struct{}
	if sess != nil {
		sessDone = sess.Done()
	}
	select {
	case r := <-merged:
		if r.err != nil && ctx.Err() == nil {
			c.log.Debug("watch ended; reading again", "error", r.err)
			// No hot loop while etcd has no leader: the next read
			// waits for one (or times out as an outage).
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return r.ev, ctx.Err()
	case <-sessDone:
		return nil, failure.AsOutage(ErrSessionLost)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// watchLatest sends what read returns now and after every change of specs
// after the revision read returned, until ctx ends: only the latest value
// waits for a slow receiver, and a read that fails (etcd unreachable) is
// retried with backoff, sending nothing meanwhile.
func watchLatest[T any](ctx context.Context, c *Client, read func(ctx context.Context) (T, int64, error), specs ...watchSpec) <-chan T {
	out := make(chan T, 1)
	go func() {
		defer close(out)
		failed := 0
		for ctx.Err() == nil {
			v, rev, err := read(ctx)
			if err != nil {
				failed++
				if !sleepOrKick(ctx, nil, retryPolicy.Delay(failed)) {
					return
				}
				continue
			}
			failed = 0
			select { // keep only the latest
			case <-out:
			default:
			}
			out <- v
			_ = c.waitChange(ctx, nil, rev, specs...)
		}
	}()
	return out
}
