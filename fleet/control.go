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

// Resume ends a fleet-wide pause.
func (c *Client) Resume(ctx context.Context, env string) error {
	_, err := c.txn(ctx, "resume fleet", nil, []clientv3.Op{clientv3.OpDelete(c.keys(env).pause())})
	return err
}

// Control reads env's pause and retry generation.
func (c *Client) Control(ctx context.Context, env string) (Control, error) {
	k := c.keys(env)
	resp, err := c.txn(ctx, "read fleet control", nil, []clientv3.Op{clientv3.OpGet(k.pause()), clientv3.OpGet(k.retry())})
	if err != nil {
		return Control{}, err
	}
	return controlOf(resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs), nil
}

func controlOf(pause, retry []*mvccpb.KeyValue) Control {
	var ctl Control
	ctl.Pause = decodeFirst[PauseInfo](pause)
	if len(retry) > 0 {
		ctl.Retry = retry[0].ModRevision
		ctl.RetryBy = decodeFirst[PauseInfo](retry)
	}
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
	out := make(chan Control, 1)
	go func() {
		defer close(out)
		k := c.keys(env)
		backoff := time.Second
		for ctx.Err() == nil {
			resp, err := c.txn(ctx, "read fleet control", nil, []clientv3.Op{clientv3.OpGet(k.pause()), clientv3.OpGet(k.retry())})
			if err != nil {
				if !sleepOrKick(ctx, nil, backoff) {
					return
				}
				backoff = min(2*backoff, 30*time.Second)
				continue
			}
			backoff = time.Second
			ctl := controlOf(resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs)
			select { // keep only the latest
			case <-out:
			default:
			}
			out <- ctl
			_ = c.waitChange(ctx, nil, resp.Header.Revision, prefixOf(k.ctl()))
		}
	}()
	return out
}
