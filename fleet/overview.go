package fleet

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Reads for the status page (package ui): everything it shows of an
// env's fleet comes from one transaction per page (Overview), never from
// one read per host, job or revision.

// Overview is one env's fleet as the status page shows it.
type Overview struct {
	Env     string
	Hosts   []HostStatus // sorted by name, gone hosts included
	Control Control
	Halts   []Halt
	Good    *Good
	// Rollouts are the newest revisions' rollout records, newest first,
	// each with the hosts' results.
	Rollouts []RolloutState
	// Slots are the deploy slots held now; Queued counts the hosts
	// waiting for one.
	Slots  []SlotHolder
	Queued int64
	// Migrations are the newest migration records, newest first.
	Migrations []MigrationState
	// Jobs are the jobs with records in etcd, by name, each with its
	// runs newest first.
	Jobs []JobHistory
}

// RolloutState is a revision's rollout record with the hosts' results.
type RolloutState struct {
	Wave
	Done []HostResult // by time
	// Pausing: the canaries passed and the pause began; Promoted: the
	// canary gate is open.
	Pausing, Promoted bool
}

// HostResult is one host's result for a revision.
type HostResult struct {
	Host   string    `json:"host"`
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// SlotHolder is a deploy slot held now.
type SlotHolder struct {
	Index    int
	Host     string
	Revision string
	Since    time.Time
}

// JobHistory is one job's records in etcd, newest first.
type JobHistory struct {
	Job  string
	Runs []JobRecord
}

// Bounds of one overview read: the newest keys of the prefixes that
// grow with time (rollout records, migrations), all of the others.
const (
	overviewRolloutKeys   = 4096
	overviewMigrationKeys = 512
	overviewRollouts      = 10
	opsPerEnv             = 10
	// maxTxnOps is etcd's default --max-txn-ops.
	maxTxnOps = 128
)

// Overview reads envs' fleets, in one transaction per dozen envs.
func (c *Client) Overview(ctx context.Context, envs []string) ([]Overview, error) {
	return c.overview(ctx, envs, nil)
}

// Overviews reads Overview again and again (a status page), decoding only
// the values that changed since its previous read: most keys of a fleet
// do not change from one page to the next, and decoding thousands of
// JSON values is most of a read's cost. Safe for concurrent use.
type Overviews struct {
	*Client

	mu    sync.Mutex
	cache map[string]cachedValue
}

// Overview is Client.Overview, decoding only what changed.
func (o *Overviews) Overview(ctx context.Context, envs []string) ([]Overview, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	dc := &decodeCache{prev: o.cache, next: make(map[string]cachedValue, len(o.cache))}
	out, err := o.Client.overview(ctx, envs, dc)
	if err == nil {
		o.cache = dc.next // what the read no longer holds is forgotten
	}
	return out, err
}

// Forget drops the decoded values kept for the next read (the page was
// not looked at for a while: the next read decodes everything).
func (o *Overviews) Forget() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.cache = nil
}

// decodeCache holds the values of one read, by key and mod revision.
type decodeCache struct{ prev, next map[string]cachedValue }

type cachedValue struct {
	mod int64
	v   any
}

// decode unmarshals kv's JSON value into a T, or takes it from dc when
// kv did not change since the previous read (dc nil: no cache). Values
// from the cache are shared: callers must not change their maps and
// slices.
func decode[T any](dc *decodeCache, kv *mvccpb.KeyValue) (T, bool) {
	if dc != nil {
		if e, ok := dc.prev[string(kv.Key)]; ok && e.mod == kv.ModRevision {
			if v, ok := e.v.(T); ok {
				dc.next[string(kv.Key)] = e
				return v, true
			}
		}
	}
	var t T
	if json.Unmarshal(kv.Value, &t) != nil {
		return t, false
	}
	if dc != nil {
		dc.next[string(kv.Key)] = cachedValue{mod: kv.ModRevision, v: t}
	}
	return t, true
}

func (c *Client) overview(ctx context.Context, envs []string, dc *decodeCache) ([]Overview, error) {
	out := make([]Overview, 0, len(envs))
	per := maxTxnOps / opsPerEnv
	for len(envs) > 0 {
		chunk := envs[:min(per, len(envs))]
		envs = envs[len(chunk):]
		var ops []clientv3.Op
		for _, env := range chunk {
			ops = append(ops, overviewOps(c.keys(env))...)
		}
		resp, err := c.txn(ctx, "read the fleet's overview", nil, ops)
		if err != nil {
			return nil, err
		}
		now := c.now()
		for i, env := range chunk {
			r := resp.Responses[i*opsPerEnv : (i+1)*opsPerEnv]
			kvs := func(j int) []*mvccpb.KeyValue { return r[j].GetResponseRange().Kvs }
			k := c.keys(env)
			o := Overview{Env: env, Hosts: mergeHosts(kvs(0), kvs(1), now, dc)}
			o.Control = controlOfKVs(k, kvs(2))
			for _, kv := range kvs(3) {
				if h, ok := decode[Halt](dc, kv); ok {
					o.Halts = append(o.Halts, h)
				}
			}
			o.Good = decodeFirst[Good](kvs(4))
			o.Rollouts = rolloutsOf(k, kvs(5), dc)
			o.Slots = slotsOf(k, kvs(6))
			o.Queued = r[7].GetResponseRange().Count
			o.Migrations = migrationsOf(kvs(8), dc)
			o.Jobs = jobsOf(k, kvs(9), dc)
			out = append(out, o)
		}
	}
	return out, nil
}

// overviewOps are the reads of one env, in the order Overview decodes
// them.
func overviewOps(k keys) []clientv3.Op {
	newest := func(limit int64) []clientv3.OpOption {
		return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend), clientv3.WithLimit(limit)}
	}
	return []clientv3.Op{
		clientv3.OpGet(k.hosts(), clientv3.WithPrefix()),
		clientv3.OpGet(k.seens(), clientv3.WithPrefix()),
		clientv3.OpGet(k.ctl(), clientv3.WithPrefix()),
		clientv3.OpGet(k.halts(), clientv3.WithPrefix()),
		clientv3.OpGet(k.good()),
		clientv3.OpGet(k.root+"/rollout/", newest(overviewRolloutKeys)...),
		clientv3.OpGet(k.slots(), clientv3.WithPrefix()),
		clientv3.OpGet(k.queue(), clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(k.root+"/migrate/", newest(overviewMigrationKeys)...),
		clientv3.OpGet(k.root+"/job/", clientv3.WithPrefix()),
	}
}

// controlOfKVs decodes the ctl/ prefix as Control does its three keys.
func controlOfKVs(k keys, kvs []*mvccpb.KeyValue) Control {
	var ctl Control
	for _, kv := range kvs {
		one := []*mvccpb.KeyValue{kv}
		switch string(kv.Key) {
		case k.pause():
			ctl.Pause = decodeFirst[PauseInfo](one)
		case k.retry():
			ctl.Retry, ctl.RetryBy = kv.ModRevision, decodeFirst[PauseInfo](one)
		case k.rollbackCtl():
			ctl.Rollback = decodeFirst[RollbackInfo](one)
		}
	}
	return ctl
}

// rolloutsOf groups the newest rollout keys by revision: the record, the
// hosts' results, the canary gate. At most overviewRollouts revisions,
// newest first.
func rolloutsOf(k keys, kvs []*mvccpb.KeyValue, dc *decodeCache) []RolloutState {
	pfx := k.root + "/rollout/"
	byRev := map[string]*RolloutState{}
	var order []string
	get := func(seg string) *RolloutState {
		r := byRev[seg]
		if r == nil {
			r = &RolloutState{}
			byRev[seg] = r
			order = append(order, seg)
		}
		return r
	}
	for _, kv := range kvs {
		rest := strings.TrimPrefix(string(kv.Key), pfx)
		seg, tail, _ := strings.Cut(rest, "/")
		r := get(seg)
		switch {
		case tail == "":
			if w, ok := decode[Wave](dc, kv); ok {
				w.seq, w.modRev = kv.CreateRevision, kv.ModRevision
				r.Wave = w
			}
		case strings.HasPrefix(tail, "done/"):
			if d, ok := decode[doneRecord](dc, kv); ok {
				r.Done = append(r.Done, HostResult(d))
			}
		case tail == "pausing":
			r.Pausing = true
		case tail == "promoted":
			r.Promoted = true
		}
	}
	var out []RolloutState
	for _, seg := range order {
		r := byRev[seg]
		if r.Revision == "" { // its record is older than the keys read
			continue
		}
		slices.SortFunc(r.Done, func(a, b HostResult) int { return a.At.Compare(b.At) })
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b RolloutState) int { return compareInt(b.seq, a.seq) })
	return out[:min(len(out), overviewRollouts)]
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func slotsOf(k keys, kvs []*mvccpb.KeyValue) []SlotHolder {
	var out []SlotHolder
	for _, kv := range kvs {
		i, err := strconv.Atoi(strings.TrimPrefix(string(kv.Key), k.slots()))
		var v slotValue
		if err != nil || json.Unmarshal(kv.Value, &v) != nil {
			continue
		}
		out = append(out, SlotHolder{Index: i, Host: v.Host, Revision: v.Revision, Since: v.Since})
	}
	return out
}

func migrationsOf(kvs []*mvccpb.KeyValue, dc *decodeCache) []MigrationState {
	var out []MigrationState
	for _, kv := range kvs {
		if !strings.HasSuffix(string(kv.Key), "/state") {
			continue
		}
		if st, ok := decode[MigrationState](dc, kv); ok {
			out = append(out, st)
		}
	}
	return out
}

// jobsOf groups the job/ prefix by job: run records (a running one whose
// runner's lease is gone shows as lost, as JobRuns has it), newest first.
func jobsOf(k keys, kvs []*mvccpb.KeyValue, dc *decodeCache) []JobHistory {
	pfx := k.root + "/job/"
	active := map[string]bool{}
	for _, kv := range kvs {
		name, rest, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), pfx), "/")
		if t, ok := strings.CutPrefix(rest, "active/"); ok {
			active[name+"/"+t] = true
		}
	}
	byJob := map[string]*JobHistory{}
	var names []string
	for _, kv := range kvs {
		seg, rest, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), pfx), "/")
		t, ok := strings.CutPrefix(rest, "run/")
		if !ok {
			continue
		}
		r, ok := decode[JobRecord](dc, kv)
		if !ok {
			continue
		}
		r.Token = kv.CreateRevision
		showLost(&r, active[seg+"/"+t])
		h := byJob[seg]
		if h == nil {
			name, err := url.PathUnescape(seg)
			if err != nil {
				name = seg
			}
			h = &JobHistory{Job: name}
			byJob[seg] = h
			names = append(names, seg)
		}
		h.Runs = append(h.Runs, r)
	}
	slices.Sort(names)
	out := make([]JobHistory, 0, len(names))
	for _, n := range names {
		h := byJob[n]
		slices.Reverse(h.Runs) // keys sort by time: newest first
		out = append(out, *h)
	}
	return out
}

// Envs lists the envs under the prefix: one keys-only read of one key per
// env, skipping from each env to the next (the page caches the list).
func (c *Client) Envs(ctx context.Context) ([]string, error) {
	root := c.cfg.Prefix + "/"
	end := clientv3.GetPrefixRangeEnd(root)
	from := root
	var out []string
	for len(out) < 1000 {
		resp, err := c.get(ctx, from, clientv3.WithRange(end), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 0 {
			break
		}
		seg, _, _ := strings.Cut(strings.TrimPrefix(string(resp.Kvs[0].Key), root), "/")
		if name, err := url.PathUnescape(seg); err == nil && name != "" {
			out = append(out, name)
		}
		from = root + seg + "0" // '0' follows '/': the next env's first key
	}
	return out, nil
}

// Revision is etcd's revision now: it changes with every write, so the
// page tells from it when to read the overview again.
func (c *Client) Revision(ctx context.Context) (int64, error) {
	resp, err := c.get(ctx, c.cfg.Prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}
