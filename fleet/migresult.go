package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// finishMigration writes res over the running record it replaces. If the
// record was marked interrupted (by a host that found our lease gone) and
// still names our token, res replaces the mark: nobody else ran it. A done
// result also lifts the halt that the mark caused, in the same
// transaction, and grows the retry generation with the reason, so every
// host forgets the held and failed marks the halt left and logs why. If
// the record was taken over or cleared, res is dropped.
func (c *Client) finishMigration(ctx context.Context, env, key string, runningRev int64, res MigrationState) error {
	want := runningRev
	var lift []clientv3.Op
	for range 5 {
		b, _ := json.Marshal(res)
		resp, err := c.txn(ctx, "write migration result",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", want)},
			append([]clientv3.Op{clientv3.OpPut(key, string(b))}, lift...),
			clientv3.OpGet(key))
		if err != nil {
			return err
		}
		if resp.Succeeded {
			if lift != nil {
				c.log.Warn("a late migration result lifted the halt its interrupted mark caused: every host retries the revision",
					"env", env, "service", res.Service, "token", res.Token)
			}
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		var cur MigrationState
		if len(kvs) == 0 || json.Unmarshal(kvs[0].Value, &cur) != nil ||
			cur.Status != MigrationInterrupted || cur.Host != res.Host || cur.Token != res.Token {
			c.log.Warn("migration result not written: another host took it over or it was retried", "service", res.Service, "result", res.Status)
			return nil
		}
		res.Note = strings.TrimSpace(res.Note + " (result written after this host lost its lease and another marked it interrupted)")
		want = kvs[0].ModRevision
		if lift, err = c.liftOps(ctx, env, cur, res); err != nil {
			return err
		}
	}
	return errors.New("migration result: state kept changing")
}

// liftOps are the operations that lift the halt an interrupted mark
// caused, when res is the interrupted run's own done result: delete the
// halt (if it is still that mark's) and grow the retry generation.
func (c *Client) liftOps(ctx context.Context, env string, cur, res MigrationState) ([]clientv3.Op, error) {
	if res.Status != MigrationDone || cur.Halted == "" {
		return nil, nil
	}
	k := c.keys(env)
	hk := k.halt(cur.Halted)
	resp, err := c.get(ctx, hk)
	if err != nil {
		return nil, err
	}
	h := decodeFirst[Halt](resp.Kvs)
	if h == nil || h.Migration != res.ID || h.Token != res.Token {
		return nil, nil // gone, or another's: a deploy's verdict, an operator's halt
	}
	by, _ := json.Marshal(PauseInfo{By: c.cfg.Host, At: c.now(), Reason: fmt.Sprintf(
		"the late result of migration %s (token %d) superseded its interrupted mark: the halt of %s is lifted",
		res.Service, res.Token, short(cur.Halted))})
	return []clientv3.Op{clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(hk), "=", resp.Kvs[0].ModRevision)},
		[]clientv3.Op{clientv3.OpDelete(hk), clientv3.OpPut(k.retry(), string(by))}, nil)}, nil
}
