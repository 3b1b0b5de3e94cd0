package fleet

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PauseInfo says who paused, when and why.
type PauseInfo struct {
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Control is the operator's fleet-wide state of an env.
type Control struct {
	// Pause, when set, means: stop following the branch (keep the live
	// revision and self-heal).
	Pause *PauseInfo
	// Retry is the retry generation: it grows with every `berth retry`.
	// A host that sees it grow forgets its local failed marks.
	Retry int64
	// RetryBy is the last retry's author and time.
	RetryBy *PauseInfo
	// Rollback, when set, is `berth rollback --fleet`: every host deploys
	// Rollback.Commit instead of the branch head (through the waves), until
	// the head moves past Rollback.Head or `berth resume --fleet`.
	Rollback *RollbackInfo
}

// RollbackInfo is a fleet-wide rollback: to which revision, from which
// head, who, when and why.
type RollbackInfo struct {
	Commit string    `json:"commit"`
	Head   string    `json:"head"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Pause pauses env fleet-wide. It overwrites an earlier pause (who, when
// and why are the latest).
func (c *Client) Pause(ctx context.Context, env string, p PauseInfo) error {
	if p.At.IsZero() {
		p.At = c.now()
	}
	b, _ := json.Marshal(p)
	_, err := c.txn(ctx, "pause fleet", nil, []clientv3.Op{clientv3.OpPut(c.keys(env).pause(), string(b))})
	return err
}

// Resume ends a fleet-wide pause, and a fleet-wide rollback.
func (c *Client) Resume(ctx context.Context, env string) error {
	k := c.keys(env)
	_, err := c.txn(ctx, "resume fleet", nil, []clientv3.Op{clientv3.OpDelete(k.pause()), clientv3.OpDelete(k.rollbackCtl())})
	return err
}

// Rollback is `berth rollback --fleet`: it halts r.Head fleet-wide (hosts
// that have not deployed it never will) and tells every host to deploy
// r.Commit instead, through the waves, until a new commit or Resume.
func (c *Client) Rollback(ctx context.Context, env string, r RollbackInfo) error {
	if r.At.IsZero() {
		r.At = c.now()
	}
	k := c.keys(env)
	b, _ := json.Marshal(r)
	reason := "rolled back fleet-wide by " + r.By
	if r.Reason != "" {
		reason += ": " + r.Reason
	}
	h, _ := json.Marshal(Halt{Revision: r.Head, Host: r.By, Reason: reason, At: r.At})
	_, err := c.txn(ctx, "roll back fleet", nil, []clientv3.Op{
		clientv3.OpPut(k.rollbackCtl(), string(b)),
		clientv3.OpPut(k.epoch(), string(b)), // a new attempt of the target: canary first again
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.halt(r.Head)), "=", 0)},
			[]clientv3.Op{clientv3.OpPut(k.halt(r.Head), string(h))}, nil),
	})
	return err
}

// Control reads env's pause and retry generation.
func (c *Client) Control(ctx context.Context, env string) (Control, error) {
	k := c.keys(env)
	resp, err := c.txn(ctx, "read fleet control", nil, controlOps(k))
	if err != nil {
		return Control{}, err
	}
	return controlOf(resp), nil
}

func controlOps(k keys) []clientv3.Op {
	return []clientv3.Op{clientv3.OpGet(k.pause()), clientv3.OpGet(k.retry()), clientv3.OpGet(k.rollbackCtl())}
}

func controlOf(resp *clientv3.TxnResponse) Control {
	var ctl Control
	kvs := func(i int) []*mvccpb.KeyValue { return resp.Responses[i].GetResponseRange().Kvs }
	ctl.Pause = decodeFirst[PauseInfo](kvs(0))
	if retry := kvs(1); len(retry) > 0 {
		ctl.Retry = retry[0].ModRevision
		ctl.RetryBy = decodeFirst[PauseInfo](retry)
	}
	ctl.Rollback = decodeFirst[RollbackInfo](kvs(2))
	return ctl
}

// Retry is `berth retry` for the whole fleet: it clears every halt of
// env, and every failed or interrupted migration record (so the next host
// to reach one runs it again), and bumps the retry generation so each
// host forgets its own failed mark. It returns the new generation.
func (c *Client) Retry(ctx context.Context, env string, by PauseInfo) (int64, error) {
	if by.At.IsZero() {
		by.At = c.now()
	}
	k := c.keys(env)
	resp, err := c.get(ctx, k.root+"/migrate/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	for _, kv := range resp.Kvs {
		if !strings.HasSuffix(string(kv.Key), "/state") {
			continue
		}
		var st MigrationState
		if json.Unmarshal(kv.Value, &st) != nil || (st.Status != MigrationFailed && st.Status != MigrationInterrupted) {
			continue
		}
		if _, err := c.txn(ctx, "clear migration",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
			[]clientv3.Op{clientv3.OpDelete(string(kv.Key))}); err != nil {
			return 0, err
		}
		c.log.Info("retry: migration record cleared", "env", env, "service", st.Service, "status", st.Status, "host", st.Host)
	}
	b, _ := json.Marshal(by)
	tr, err := c.txn(ctx, "retry", nil, []clientv3.Op{
		clientv3.OpDelete(k.halts(), clientv3.WithPrefix()),
		clientv3.OpPut(k.retry(), string(b)),
		clientv3.OpPut(k.epoch(), string(b)), // a new attempt of the head: canary first again
	})
	if err != nil {
		return 0, err
	}
	c.log.Info("retry: halts cleared fleet-wide", "env", env, "by", by.By)
	return tr.Header.Revision, nil
}

// WatchControl sends env's Control now and after every change, until ctx
// ends; it reconnects by itself, and sends nothing while etcd is
// unreachable. A host uses it to react at once to a pause, a resume or a
// retry instead of at its next poll.
func (c *Client) WatchControl(ctx context.Context, env string) <-chan Control {
	k := c.keys(env)
	return watchLatest(ctx, c, func(ctx context.Context) (Control, int64, error) {
		resp, err := c.txn(ctx, "read fleet control", nil, controlOps(k))
		if err != nil {
			return Control{}, 0, err
		}
		return controlOf(resp), resp.Header.Revision, nil
	}, prefixOf(k.ctl()))
}
