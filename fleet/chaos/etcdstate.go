package chaos

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// KV is one key of etcd's final state.
type KV struct {
	Key    string
	Value  []byte
	Create int64
	Mod    int64
	Lease  int64
}

// Change is one event of etcd's MVCC history.
type Change struct {
	Rev    int64
	Key    string
	Put    bool // else a delete (by a client, a lease's end, a range delete)
	Value  []byte
	Create int64
	Lease  int64
}

// snapshotOf reads every key under prefix, and the revision read at.
func snapshotOf(ctx context.Context, cli *clientv3.Client, prefix string) (map[string]KV, int64, error) {
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("read etcd's final state: %w", err)
	}
	out := make(map[string]KV, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = KV{Key: string(kv.Key), Value: kv.Value, Create: kv.CreateRevision, Mod: kv.ModRevision, Lease: kv.Lease}
	}
	return out, resp.Header.Revision, nil
}

// historyOf replays every change under prefix from the first revision up
// to upTo. The harness's etcd never compacts, so nothing is missing.
func historyOf(ctx context.Context, cli *clientv3.Client, prefix string, upTo int64) ([]Change, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(1))
	var out []Change
	idle := time.NewTimer(10 * time.Second)
	defer idle.Stop()
	for {
		select {
		case wr, ok := <-ch:
			if !ok {
				return nil, fmt.Errorf("read etcd's history: watch closed")
			}
			if err := wr.Err(); err != nil {
				return nil, fmt.Errorf("read etcd's history: %w", err)
			}
			for _, ev := range wr.Events {
				out = append(out, Change{Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key), Put: ev.Type == clientv3.EventTypePut,
					Value: ev.Kv.Value, Create: ev.Kv.CreateRevision, Lease: ev.Kv.Lease})
			}
			if len(out) > 0 && out[len(out)-1].Rev >= upTo {
				return out, nil
			}
			idle.Reset(2 * time.Second)
		case <-idle.C:
			return out, nil // caught up: nothing changed under prefix at upTo itself
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
