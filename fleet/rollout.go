package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

// Policy is x-berth.rollout: how a new revision spreads over the fleet.
type Policy struct {
	// Canary hosts deploy a new revision first; the others start only
	// when every canary is live on it, plus Pause.
	Canary int
	// MaxParallel is "N" or "P%" (of the hosts alive when the revision's
	// record is made); "" means no limit.
	MaxParallel string
	Pause       time.Duration
}

// ParseMaxParallel turns "N" or "P%" into a number of hosts, given the
// number of hosts known. "" is 0: no limit. A percentage rounds down, but
// never below one host.
func ParseMaxParallel(s string, known int) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v <= 0 || v > 100 {
			return 0, fmt.Errorf("max_parallel %q: a percentage must be in (0, 100]", s)
		}
		return max(1, int(v*float64(known)/100)), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("max_parallel %q: write a number of hosts (e.g. 2) or a percentage (e.g. 25%%)", s)
	}
	return n, nil
}

// Wave is the permanent record of one revision's rollout: it fixes the
// canaries and max_parallel (as a number) once, when the first host
// reaches the revision, so every host applies the same numbers.
type Wave struct {
	Revision        string        `json:"revision"`
	Canaries        []string      `json:"canaries"`
	MaxParallel     int           `json:"max_parallel"` // 0: no limit
	MaxParallelSpec string        `json:"max_parallel_spec,omitempty"`
	Pause           time.Duration `json:"pause"`
	Known           []string      `json:"known"` // hosts alive when it was made
	Created         time.Time     `json:"created"`
	By              string        `json:"by"`
	// Replaced lists canaries that were gone and replaced ("a→b").
	Replaced []string `json:"replaced,omitempty"`

	seq    int64 // the record's create revision: orders revisions
	modRev int64
}

// Halt stops a revision fleet-wide: hosts that have not started it never
// do. It clears only with `berth retry` (Retry), or by a new commit (a new
// revision has no halt).
type Halt struct {
	Revision string    `json:"revision"`
	Host     string    `json:"host"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// HaltedError is Admit refusing a halted revision. It is a verdict: the
// revision failed (elsewhere). Callers should not count it as a local
// failure to remember: the halt lives in etcd, and Retry clears it there.
type HaltedError struct{ Halt Halt }

func (e *HaltedError) Error() string {
	return fmt.Sprintf("revision %s is halted fleet-wide: %s (on %s); a new commit or `berth retry` clears it",
		short(e.Halt.Revision), e.Halt.Reason, e.Halt.Host)
}

// Good is the fleet's last good revision: the last one whose rollout
// completed. A host that joins during a halt or mid-rollout deploys it.
type Good struct {
	Revision string    `json:"revision"`
	Seq      int64     `json:"seq"`
	At       time.Time `json:"at"`
}

// doneRecord is one host's result for a revision.
type doneRecord struct {
	Host   string    `json:"host"`
	OK     bool      `json:"ok"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at"`
}

// RolloutRequest asks to deploy a revision.
type RolloutRequest struct {
	Revision string
	Policy   Policy
	// Live is the host's live revision; "" for a host that never
	// deployed (a joining host).
	Live string
	// Waiting, if set, is told what Admit is waiting for (for the host
	// record), and "" when it stops waiting.
	Waiting func(string)
}

// Outcome is how an admitted deploy ended.
type Outcome int

const (
	// Succeeded: the host is live on the revision.
	Succeeded Outcome = iota
	// Failed: a verdict on the revision; it halts fleet-wide.
	Failed
	// Abandoned: the deploy stopped for an outage, not a verdict; the
	// slot is freed and the host tries again later.
	Abandoned
)

// Admission is the permission to deploy one revision. Finish it exactly
// once.
type Admission struct {
	// Revision is what to deploy: the requested one, or, for a joining
	// host during a halt or mid-rollout, the fleet's last good revision.
	Revision string
	Joining  bool
	Canary   bool
	// Slot is the deploy slot held, or -1.
	Slot int

	c        *Client
	env      string
	wave     *Wave
	slotKey  string
	slotRev  int64
	lost     func() bool
	finished bool
}

// Admit waits until this host may deploy req.Revision (FLEET-NOTES rules
// 4 and 5) and returns its admission:
//   - the revision's wave record is read, or made (canaries and
//     max_parallel fixed from the hosts alive now);
//   - a halted revision is refused (HaltedError, a verdict);
//   - a joining host during a halt or an unfinished rollout is told to
//     deploy the fleet's last good revision instead (Joining);
//   - a non-canary host waits until every canary is live on the revision
//     and the pause has passed;
//   - then it queues for a deploy slot behind one predecessor, and takes a
//     free slot by compare-and-swap that also checks the halt.
//
// Waiting ends with an outage if the session dies (the queue place and
// any slot went with it) and with ctx.
func (c *Client) Admit(ctx context.Context, env string, req RolloutRequest) (*Admission, error) {
	wait := req.Waiting
	if wait == nil {
		wait = func(string) {}
	}
	defer wait("")
	sess, err := c.Session(ctx)
	if err != nil {
		return nil, err
	}
	w, err := c.wave(ctx, env, sess, req)
	if err != nil {
		return nil, err
	}
	k := c.keys(env)
	resp, err := c.txn(ctx, "read halt", nil, []clientv3.Op{clientv3.OpGet(k.halt(req.Revision)), clientv3.OpGet(k.good())})
	if err != nil {
		return nil, err
	}
	halt := decodeFirst[Halt](resp.Responses[0].GetResponseRange().Kvs)
	good := decodeFirst[Good](resp.Responses[1].GetResponseRange().Kvs)
	if req.Live == "" && good != nil && good.Revision != req.Revision {
		joinGood := halt != nil
		if !joinGood {
			done, err := c.complete(ctx, env, w)
			if err != nil {
				return nil, err
			}
			joinGood = !done
		}
		if joinGood {
			c.log.Info("joining during a halt or mid-rollout: deploying the fleet's last good revision first",
				"env", env, "head", short(req.Revision), "good", short(good.Revision))
			return &Admission{Revision: good.Revision, Joining: true, Slot: -1, c: c, env: env}, nil
		}
	}
	if halt != nil {
		return nil, failure.AsVerdict(&HaltedError{Halt: *halt})
	}
	a := &Admission{Revision: req.Revision, Slot: -1, c: c, env: env, wave: w, Canary: slices.Contains(w.Canaries, c.cfg.Host)}
	if !a.Canary && len(w.Canaries) > 0 {
		canary, err := c.waitGate(ctx, env, sess, w, wait)
		if err != nil {
			return nil, err
		}
		a.Canary = canary
	}
	if err := c.takeSlot(ctx, env, sess, a, wait); err != nil {
		return nil, err
	}
	return a, nil
}

// wave reads the revision's record, or makes it. When a new revision
// reaches every host at once (a webhook), one host makes the record: the
// first to put a lease-bound "creating" key; the others wait on a watch
// for the record instead of all reading the host list at once.
func (c *Client) wave(ctx context.Context, env string, sess *concurrency.Session, req RolloutRequest) (*Wave, error) {
	key := c.keys(env).rollout(req.Revision)
	creating := key + "/creating"
	resp, err := c.get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) > 0 {
		return decodeWave(resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, resp.Kvs[0].ModRevision)
	}
	for {
		tr, err := c.txnSess(ctx, sess, "claim rollout record",
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(creating), "=", 0),
			},
			[]clientv3.Op{clientv3.OpPut(creating, c.cfg.Host, clientv3.WithLease(sess.Lease()))},
			clientv3.OpGet(key))
		if err != nil {
			return nil, err
		}
		if tr.Succeeded {
			break
		}
		if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			return decodeWave(kvs[0].Value, kvs[0].CreateRevision, kvs[0].ModRevision)
		}
		if err := c.waitChange(ctx, sess, tr.Header.Revision, keyOf(key), keyOf(creating)); err != nil {
			return nil, err
		}
	}
	defer func() { // lease-bound anyway; this only frees it sooner
		dctx, cancel := context.WithTimeout(c.ctx, c.cfg.Timeout)
		_, _ = c.txn(dctx, "drop rollout claim", nil, []clientv3.Op{clientv3.OpDelete(creating)})
		cancel()
	}()
	known, err := c.hostNames(ctx, env)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(known, c.cfg.Host) {
		known = append(known, c.cfg.Host)
		slices.Sort(known)
	}
	n, err := ParseMaxParallel(req.Policy.MaxParallel, len(known))
	if err != nil {
		return nil, failure.AsVerdict(err)
	}
	canaries, err := c.chooseCanaries(ctx, env, req.Revision, known, nil, req.Policy.Canary)
	if err != nil {
		return nil, err
	}
	w := &Wave{Revision: req.Revision, MaxParallel: n, MaxParallelSpec: req.Policy.MaxParallel, Pause: req.Policy.Pause,
		Known: known, Created: c.now(), By: c.cfg.Host, Canaries: canaries}
	b, _ := json.Marshal(w)
	tr, err := c.txn(ctx, "create rollout record",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, string(b))},
		clientv3.OpGet(key))
	if err != nil {
		return nil, err
	}
	if !tr.Succeeded {
		kv := tr.Responses[0].GetResponseRange().Kvs[0]
		return decodeWave(kv.Value, kv.CreateRevision, kv.ModRevision)
	}
	w.seq, w.modRev = tr.Header.Revision, tr.Header.Revision
	c.log.Info("rollout started", "env", env, "commit", short(req.Revision), "canaries", strings.Join(w.Canaries, ","),
		"max_parallel", w.MaxParallel, "hosts", len(known))
	return w, nil
}

// hostNames lists the alive hosts of env, sorted, reading keys only (a
// fleet of 1,000 hosts is 1,000 short keys, not 1,000 records).
func (c *Client) hostNames(ctx context.Context, env string) ([]string, error) {
	k := c.keys(env)
	resp, err := c.get(ctx, k.hosts(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, kv := range resp.Kvs {
		if h, err := url.PathUnescape(strings.TrimPrefix(string(kv.Key), k.hosts())); err == nil {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out, nil
}

// chooseCanaries takes n of names, not in skip, in the revision's
// rendezvous order, reading each candidate's record to pass over hosts
// that are paused or held (they would never deploy).
func (c *Client) chooseCanaries(ctx context.Context, env, rev string, names, skip []string, n int) ([]string, error) {
	var out []string
	for _, h := range rendezvous(rev, names) {
		if len(out) == n {
			break
		}
		if slices.Contains(skip, h) {
			continue
		}
		if h != c.cfg.Host {
			resp, err := c.get(ctx, c.keys(env).host(h))
			if err != nil {
				return nil, err
			}
			st := decodeFirst[HostState](resp.Kvs)
			if st == nil || st.Paused != nil || st.Held != "" {
				continue
			}
		}
		out = append(out, h)
	}
	return out, nil
}

// rendezvous orders hosts by a hash of the revision and the host
// (rendezvous hashing): the same order for everyone who computes it, and
// a different one for each revision, so no host is always the canary.
func rendezvous(rev string, hosts []string) []string {
	score := func(h string) string {
		s := sha256.Sum256([]byte(rev + "\x00" + h))
		return string(s[:])
	}
	hosts = slices.Clone(hosts)
	slices.SortFunc(hosts, func(a, b string) int { return strings.Compare(score(a), score(b)) })
	return hosts
}

// waitGate waits until the revision's canaries are all live on it and
// the pause has passed, opening the gate (promoted) itself when it sees
// that first. The pause is a lease that is never kept alive: it measures
// time on etcd's leader, not on any host's clock. It also returns when
// this host was made a canary (replacing one that was gone): true.
func (c *Client) waitGate(ctx context.Context, env string, sess *concurrency.Session, w *Wave, wait func(string)) (bool, error) {
	k := c.keys(env)
	rev := w.Revision
	for {
		ops := []clientv3.Op{
			clientv3.OpGet(k.promoted(rev)), clientv3.OpGet(k.pausing(rev)), clientv3.OpGet(k.pauseTimer(rev)),
			clientv3.OpGet(k.halt(rev)), clientv3.OpGet(k.rollout(rev)),
		}
		for _, h := range w.Canaries {
			ops = append(ops, clientv3.OpGet(k.done(rev, h)), clientv3.OpGet(k.host(h)))
		}
		resp, err := c.txn(ctx, "read canary gate", nil, ops)
		if err != nil {
			return false, err
		}
		r := resp.Responses
		if h := decodeFirst[Halt](r[3].GetResponseRange().Kvs); h != nil {
			return false, failure.AsVerdict(&HaltedError{Halt: *h})
		}
		if len(r[0].GetResponseRange().Kvs) > 0 {
			return false, nil
		}
		if kvs := r[4].GetResponseRange().Kvs; len(kvs) > 0 && kvs[0].ModRevision != w.modRev {
			nw, err := decodeWave(kvs[0].Value, kvs[0].CreateRevision, kvs[0].ModRevision)
			if err != nil {
				return false, err
			}
			*w = *nw
			if slices.Contains(w.Canaries, c.cfg.Host) {
				c.log.Info("made a canary in place of a gone one", "env", env, "commit", short(rev))
				return true, nil
			}
			continue // the canaries changed: read their keys
		}
		var missing, gone []string
		for i, h := range w.Canaries {
			done := decodeFirst[doneRecord](r[5+2*i].GetResponseRange().Kvs)
			st := decodeFirst[HostState](r[6+2*i].GetResponseRange().Kvs)
			switch {
			case done != nil && done.OK, st != nil && st.Live != nil && st.Live.Revision == rev:
			case done == nil && st == nil:
				missing, gone = append(missing, h), append(gone, h)
			default:
				missing = append(missing, h)
			}
		}
		specs := []watchSpec{prefixOf(k.rollout(rev) + "/"), keyOf(k.rollout(rev)), keyOf(k.halt(rev))}
		for _, h := range w.Canaries {
			specs = append(specs, keyOf(k.host(h)))
		}
		if len(missing) > 0 {
			if len(gone) > 0 {
				replaced, err := c.replaceCanaries(ctx, env, w, gone)
				if err != nil {
					return false, err
				}
				if replaced {
					continue
				}
			}
			wait(fmt.Sprintf("waiting for canaries %s to go live on %s", strings.Join(missing, ","), short(rev)))
			if err := c.waitChange(ctx, sess, resp.Header.Revision, specs...); err != nil {
				return false, err
			}
			continue
		}
		pausing := len(r[1].GetResponseRange().Kvs) > 0
		timer := len(r[2].GetResponseRange().Kvs) > 0
		switch {
		case w.Pause <= 0 || (pausing && !timer):
			if err := c.promote(ctx, env, rev); err != nil {
				return false, err
			}
			continue
		case !pausing:
			if err := c.startPause(ctx, env, w); err != nil {
				return false, err
			}
			continue
		}
		wait(fmt.Sprintf("canaries live on %s: pausing %s", short(rev), w.Pause))
		if err := c.waitChange(ctx, sess, resp.Header.Revision, specs...); err != nil {
			return false, err
		}
	}
}

func (c *Client) promote(ctx context.Context, env, rev string) error {
	k := c.keys(env)
	b, _ := json.Marshal(map[string]any{"at": c.now(), "by": c.cfg.Host})
	resp, err := c.txn(ctx, "open canary gate",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.promoted(rev)), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(k.promoted(rev), string(b))})
	if err == nil && resp.Succeeded {
		c.log.Info("canaries passed: rollout goes on to the other hosts", "env", env, "commit", short(rev))
	}
	return err
}

// startPause starts the pause after the canaries: a permanent "pausing"
// mark and a timer key on a lease of the pause's length that nobody keeps
// alive. When etcd expires it, the gate opens.
func (c *Client) startPause(ctx context.Context, env string, w *Wave) error {
	cli, err := c.client()
	if err != nil {
		return err
	}
	k := c.keys(env)
	tctx, cancel := c.timeout(ctx)
	g, err := cli.Grant(tctx, int64((w.Pause+time.Second-1)/time.Second))
	cancel()
	if err != nil {
		return c.fail(ctx, "grant pause lease", err)
	}
	b, _ := json.Marshal(map[string]any{"at": c.now(), "by": c.cfg.Host, "pause": w.Pause.String()})
	resp, err := c.txn(ctx, "start pause",
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(k.pausing(w.Revision)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(k.promoted(w.Revision)), "=", 0),
		},
		[]clientv3.Op{clientv3.OpPut(k.pausing(w.Revision), string(b)), clientv3.OpPut(k.pauseTimer(w.Revision), "", clientv3.WithLease(g.ID))})
	if err != nil || !resp.Succeeded {
		rctx, cancel := c.timeout(context.WithoutCancel(ctx))
		_, _ = cli.Revoke(rctx, g.ID)
		cancel()
		return err
	}
	c.log.Info("canaries live: pausing before the other hosts", "env", env, "commit", short(w.Revision), "pause", w.Pause)
	return nil
}

// replaceCanaries swaps gone canaries (no host record, no result) for
// eligible live hosts, in the revision's rendezvous order, by
// compare-and-swap on the record. It reports whether the record changed.
func (c *Client) replaceCanaries(ctx context.Context, env string, w *Wave, gone []string) (bool, error) {
	names, err := c.hostNames(ctx, env)
	if err != nil {
		return false, err
	}
	cands, err := c.chooseCanaries(ctx, env, w.Revision, names, w.Canaries, len(gone))
	if err != nil {
		return false, err
	}
	nw := *w
	nw.Canaries = slices.Clone(w.Canaries)
	changed := false
	for i, h := range nw.Canaries {
		if !slices.Contains(gone, h) || len(cands) == 0 {
			continue
		}
		nw.Canaries[i] = cands[0]
		nw.Replaced = append(nw.Replaced, h+"→"+cands[0])
		c.log.Info("canary gone: replaced", "env", env, "commit", short(w.Revision), "gone_host", h, "canary", cands[0])
		cands, changed = cands[1:], true
	}
	if !changed {
		return false, nil
	}
	key := c.keys(env).rollout(w.Revision)
	b, _ := json.Marshal(nw)
	_, err = c.txn(ctx, "replace canaries",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", w.modRev)},
		[]clientv3.Op{clientv3.OpPut(key, string(b))})
	return err == nil, err
}

// Finish records how the admitted deploy ended: the host's result for the
// revision (permanent), a halt on failure, and the slot freed. If etcd is
// unreachable the records are written later, from the outbox.
//
// A zero Admission (a test fake's) finishes as a no-op.
func (a *Admission) Finish(ctx context.Context, o Outcome, reason string) error {
	if a == nil || a.finished || a.c == nil {
		return nil
	}
	a.finished = true
	if a.lost != nil && a.lost() {
		a.c.log.Warn("deploy finished after its slot was lost", "env", a.env, "commit", short(a.Revision), "slot", a.Slot)
	}
	if a.Joining {
		return nil
	}
	c, k, rev, host := a.c, a.c.keys(a.env), a.Revision, a.c.cfg.Host
	var ops []clientv3.Op
	if o != Abandoned {
		b, _ := json.Marshal(doneRecord{Host: host, OK: o == Succeeded, Reason: reason, At: c.now()})
		ops = append(ops, clientv3.OpPut(k.done(rev, host), string(b)))
	}
	var halt []byte
	if o == Failed {
		halt, _ = json.Marshal(Halt{Revision: rev, Host: host, Reason: reason, At: c.now()})
	}
	slotKey, slotRev := a.slotKey, a.slotRev
	queued, err := c.later(ctx, "deploy result "+short(rev), func(ctx context.Context) error {
		if halt != nil {
			_, err := c.txn(ctx, "halt revision",
				[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.halt(rev)), "=", 0)},
				[]clientv3.Op{clientv3.OpPut(k.halt(rev), string(halt))})
			if err != nil {
				return err
			}
		}
		if slotKey == "" {
			if len(ops) == 0 {
				return nil
			}
			_, err := c.txn(ctx, "record deploy result", nil, ops)
			return err
		}
		_, err := c.txn(ctx, "record deploy result",
			[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(slotKey), "=", slotRev)},
			append(slices.Clone(ops), clientv3.OpDelete(slotKey)), ops...)
		return err
	})
	if err != nil {
		return err
	}
	if o == Failed {
		c.log.Warn("revision halted fleet-wide", "env", a.env, "commit", short(rev), "reason", reason)
	}
	if o == Succeeded && !queued {
		c.maybeGood(ctx, a.env, a.wave)
	}
	return nil
}

// maybeGood marks the revision as the fleet's last good one when its
// rollout is complete. It first counts results (cheap), and reads hosts
// only when the count is close to the number of known hosts; a rollout
// that completes because hosts died is noticed by the next joining host
// or status read instead.
func (c *Client) maybeGood(ctx context.Context, env string, w *Wave) {
	k := c.keys(env)
	resp, err := c.get(ctx, k.dones(w.Revision), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || int(resp.Count) < len(w.Known)-len(w.Known)/10-1 {
		return
	}
	if done, err := c.complete(ctx, env, w); err == nil && done {
		_ = c.setGood(ctx, env, w)
	}
}

// complete reports whether every host known when the rollout started is
// live on the revision, gone, or deliberately keeping its revision
// (paused or held), with no halt. A complete rollout also becomes the
// fleet's good revision.
func (c *Client) complete(ctx context.Context, env string, w *Wave) (bool, error) {
	k := c.keys(env)
	resp, err := c.txn(ctx, "read rollout results", nil, []clientv3.Op{
		clientv3.OpGet(k.dones(w.Revision), clientv3.WithPrefix()),
		clientv3.OpGet(k.hosts(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(k.halt(w.Revision), clientv3.WithCountOnly()),
	})
	if err != nil {
		return false, err
	}
	if resp.Responses[2].GetResponseRange().Count > 0 {
		return false, nil
	}
	ok := map[string]bool{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var d doneRecord
		if json.Unmarshal(kv.Value, &d) == nil && d.OK {
			ok[d.Host] = true
		}
	}
	alive := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		alive[string(kv.Key)] = true
	}
	for _, h := range w.Known {
		if ok[h] || !alive[k.host(h)] {
			continue
		}
		// Alive without a result: fine if it is live on the revision
		// already, or keeps its revision on purpose. The first host that
		// is neither ends the check (mid-rollout, that is at once).
		hr, err := c.get(ctx, k.host(h))
		if err != nil {
			return false, err
		}
		st := decodeFirst[HostState](hr.Kvs)
		if st != nil && !(st.Live != nil && st.Live.Revision == w.Revision) && st.Paused == nil && st.Held == "" {
			return false, nil
		}
	}
	return true, c.setGood(ctx, env, w)
}

// setGood makes w's revision the good one, unless a newer revision is.
func (c *Client) setGood(ctx context.Context, env string, w *Wave) error {
	key := c.keys(env).good()
	for range 3 {
		resp, err := c.get(ctx, key)
		if err != nil {
			return err
		}
		var mod int64
		if len(resp.Kvs) > 0 {
			var g Good
			if json.Unmarshal(resp.Kvs[0].Value, &g) == nil && g.Seq >= w.seq {
				return nil
			}
			mod = resp.Kvs[0].ModRevision
		}
		b, _ := json.Marshal(Good{Revision: w.Revision, Seq: w.seq, At: c.now()})
		tr, err := c.txn(ctx, "set good revision",
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", mod)},
			[]clientv3.Op{clientv3.OpPut(key, string(b))})
		if err != nil {
			return err
		}
		if tr.Succeeded {
			c.log.Info("rollout complete: the fleet's good revision", "env", env, "commit", short(w.Revision))
			return nil
		}
	}
	return nil
}

// GoodRevision is the fleet's last good revision, or nil.
func (c *Client) GoodRevision(ctx context.Context, env string) (*Good, error) {
	resp, err := c.get(ctx, c.keys(env).good())
	if err != nil {
		return nil, err
	}
	return decodeFirst[Good](resp.Kvs), nil
}

// Wave reads the revision's rollout record, or nil.
func (c *Client) Wave(ctx context.Context, env, rev string) (*Wave, error) {
	resp, err := c.get(ctx, c.keys(env).rollout(rev))
	if err != nil || len(resp.Kvs) == 0 {
		return nil, err
	}
	return decodeWave(resp.Kvs[0].Value, resp.Kvs[0].CreateRevision, resp.Kvs[0].ModRevision)
}

// HaltRevision halts rev fleet-wide by hand (an operator's halt).
func (c *Client) HaltRevision(ctx context.Context, env, rev, by, reason string) error {
	k := c.keys(env)
	b, _ := json.Marshal(Halt{Revision: rev, Host: by, Reason: reason, At: c.now()})
	_, err := c.txn(ctx, "halt revision",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.halt(rev)), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(k.halt(rev), string(b))})
	return err
}

// Halts lists env's halted revisions.
func (c *Client) Halts(ctx context.Context, env string) ([]Halt, error) {
	resp, err := c.get(ctx, c.keys(env).halts(), clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []Halt
	for _, kv := range resp.Kvs {
		var h Halt
		if json.Unmarshal(kv.Value, &h) == nil {
			out = append(out, h)
		}
	}
	return out, nil
}

func decodeWave(b []byte, seq, mod int64) (*Wave, error) {
	var w Wave
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("rollout record: %w", err)
	}
	w.seq, w.modRev = seq, mod
	return &w, nil
}

// decodeFirst decodes the first of kvs; nil if there is none or it does
// not parse.
func decodeFirst[T any](kvs []*mvccpb.KeyValue) *T {
	if len(kvs) == 0 {
		return nil
	}
	var t T
	if json.Unmarshal(kvs[0].Value, &t) != nil {
		return nil
	}
	return &t
}

// short is a commit hash as logs show it.
func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
