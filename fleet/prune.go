package fleet

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd holds a bounded window of an env's records (docs/fleet.md, "Key
// budget"), pruned by the hosts as they go:
//   - rollouts: the newest KeepRollouts attempts (their records, every
//     host's result, the canary gate), pruned by the host that makes a new
//     attempt; the halts of revisions older than the window with them;
//   - migrations: the newest KeepMigrations states by last use (a host
//     that skips a done migration marks it used by its revision, so one a
//     kept revision still runs is never pruned), pruned with the rollouts;
//   - jobs: each job's newest `history` records (pruneJob), and the
//     records of a job no host defines any more, once its last claim is
//     older than RemovedJobGrace (ForgetJobs);
//   - hosts: a gone host's last-seen record after a week (pruneSeen).
const (
	defaultKeepRollouts    = 10
	defaultKeepMigrations  = 100
	defaultRemovedJobGrace = 8 * 24 * time.Hour // longer than the longest starting_deadline (7 days)
)

// prune is run by the host that made a new rollout attempt.
func (c *Client) prune(ctx context.Context, env string, hosts int) {
	if err := c.pruneRollouts(ctx, env, hosts); err != nil {
		c.log.Debug("pruning rollouts failed; the next new rollout tries again", "env", env, "error", err)
	}
	if err := c.pruneMigrations(ctx, env); err != nil {
		c.log.Debug("pruning migrations failed; the next new rollout tries again", "env", env, "error", err)
	}
}

// pruneRollouts deletes every rollout key outside the newest KeepRollouts
// attempts, in one transaction of range deletes around the kept attempts,
// each guarded by "nothing in this range was created since the read" (an
// attempt made meanwhile is pruned next time, never by mistake); then the
// halts of revisions older than the window.
func (c *Client) pruneRollouts(ctx context.Context, env string, hosts int) error {
	k := c.keys(env)
	keep := c.opts.KeepRollouts
	resp, err := c.get(ctx, k.rollouts(), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(int64((keep+1)*(hosts+8))))
	if err != nil {
		return err
	}
	var kept []string
	keptRev := map[string]bool{}
	var oldest int64
	for _, kv := range resp.Kvs {
		att := strings.TrimPrefix(string(kv.Key), k.rollouts())
		if strings.Contains(att, "/") {
			continue // a result, the gate: under its attempt's record
		}
		kept, oldest = append(kept, att), kv.CreateRevision
		if rev, _, ok := strings.Cut(att, "@"); ok {
			if r, err := url.PathUnescape(rev); err == nil {
				keptRev[r] = true
			}
		}
		if len(kept) == keep {
			break
		}
	}
	if len(kept) < keep {
		return nil
	}
	slices.Sort(kept)
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	gap := func(from, to string) {
		if from < to {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(from), "<", resp.Header.Revision+1).WithRange(to))
			ops = append(ops, clientv3.OpDelete(from, clientv3.WithRange(to)))
		}
	}
	from := k.rollouts()
	for _, att := range kept {
		gap(from, k.rollout(att))
		from = clientv3.GetPrefixRangeEnd(k.rollout(att) + "/")
	}
	gap(from, clientv3.GetPrefixRangeEnd(k.rollouts()))
	tr, err := c.txn(ctx, "prune rollouts", cmps, ops)
	if err != nil {
		return err
	}
	if tr.Succeeded {
		var n int64
		for _, r := range tr.Responses {
			n += r.GetResponseDeleteRange().Deleted
		}
		if n > 0 {
			c.log.Info("pruned rollouts older than the window the fleet keeps", "env", env, "keys", n, "kept_attempts", keep)
		}
	}
	hr, err := c.get(ctx, k.halts(), clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range hr.Kvs {
		var h Halt
		if json.Unmarshal(kv.Value, &h) != nil || keptRev[h.Revision] || kv.CreateRevision >= oldest {
			continue
		}
		if _, err := c.txn(ctx, "prune halt",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)},
			[]clientv3.Op{clientv3.OpDelete(string(kv.Key))}); err != nil {
			return err
		}
	}
	return nil
}

// pruneMigrations deletes the migration states beyond the newest
// KeepMigrations by last write (a write marks a use: a run, a result, a
// kept revision skipping it), never one whose lock is held or waited for.
func (c *Client) pruneMigrations(ctx context.Context, env string) error {
	pfx := c.keys(env).root + "/migrate/"
	resp, err := c.get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	type state struct {
		key string
		mod int64
	}
	var states []state
	locked := map[string]bool{}
	for _, kv := range resp.Kvs {
		id, rest, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), pfx), "/")
		if rest == "state" {
			states = append(states, state{string(kv.Key), kv.ModRevision})
		} else {
			locked[id] = true
		}
	}
	if len(states) <= c.opts.KeepMigrations {
		return nil
	}
	slices.SortFunc(states, func(a, b state) int { return compareInt(b.mod, a.mod) })
	for _, st := range states[c.opts.KeepMigrations:] {
		id, _, _ := strings.Cut(strings.TrimPrefix(st.key, pfx), "/")
		if locked[id] {
			continue
		}
		if _, err := c.txn(ctx, "prune migration",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(st.key), "=", st.mod)},
			[]clientv3.Op{clientv3.OpDelete(st.key)}); err != nil {
			return err
		}
	}
	return nil
}

// touchMigration marks a done migration as used by rev (the first host of
// each revision that skips it writes once), so pruning keeps it while a
// kept revision still has it.
func (c *Client) touchMigration(ctx context.Context, key string, st MigrationState, mod int64, rev string) {
	if st.Status != MigrationDone || rev == "" || st.Used == rev || st.Revision == rev {
		return
	}
	st.Used = rev
	_, _, _ = c.casMigration(ctx, key, mod, st, nil)
}

// ForgetJobs deletes the records of env's jobs not in keep (the jobs the
// host's live revision defines) whose last claim is older than
// RemovedJobGrace and that no host runs: a job removed from the config is
// forgotten by the fleet once no host can still claim one of its times.
func (c *Client) ForgetJobs(ctx context.Context, env string, keep []string) error {
	k := c.keys(env)
	pfx := k.root + "/job/"
	resp, err := c.get(ctx, pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, name := range keep {
		want[seg(name)] = true
	}
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		name, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), pfx), "/")
		if want[name] || seen[name] {
			continue
		}
		seen[name] = true
		job, err := url.PathUnescape(name)
		if err != nil {
			continue
		}
		tr, err := c.txn(ctx, "read removed job", nil, []clientv3.Op{
			clientv3.OpGet(k.jobLast(job)),
			clientv3.OpGet(k.job(job)+"/active/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
		})
		if err != nil {
			return err
		}
		lkvs := tr.Responses[0].GetResponseRange().Kvs
		last := decodeFirst[JobRecord](lkvs)
		if tr.Responses[1].GetResponseRange().Count > 0 || (last != nil && c.now().Sub(last.Claimed) < c.opts.RemovedJobGrace) {
			continue
		}
		var lastMod int64
		if len(lkvs) > 0 {
			lastMod = lkvs[0].ModRevision
		}
		if _, err := c.txn(ctx, "forget removed job",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(k.jobLast(job)), "=", lastMod)},
			[]clientv3.Op{clientv3.OpDelete(k.job(job)+"/", clientv3.WithPrefix())}); err != nil {
			return err
		}
		c.log.Info("forgot the records of a job no longer defined", "env", env, "job", job)
	}
	return nil
}
