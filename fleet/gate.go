package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

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
	if n <= 0 {
		return nil, nil
	}
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
	type scored struct{ host, score string }
	ss := make([]scored, len(hosts))
	for i, h := range hosts {
		s := sha256.Sum256([]byte(rev + "\x00" + h))
		ss[i] = scored{h, string(s[:])}
	}
	slices.SortFunc(ss, func(a, b scored) int { return strings.Compare(a.score, b.score) })
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.host
	}
	return out
}

// waitGate waits until the revision's canaries are all live on it and
// the pause has passed, opening the gate (promoted) itself when it sees
// that first. The pause is a lease that is never kept alive: it measures
// time on etcd's leader, not on any host's clock. It also returns when
// this host was made a canary (replacing one that was gone): true.
func (c *Client) waitGate(ctx context.Context, env string, sess *concurrency.Session, w *Wave, wait func(string)) (bool, error) {
	k := c.keys(env)
	rev, att := w.Revision, w.Attempt
	for {
		ops := []clientv3.Op{
			clientv3.OpGet(k.promoted(att)), clientv3.OpGet(k.pausing(att)), clientv3.OpGet(k.pauseTimer(att)),
			clientv3.OpGet(k.halt(rev)), clientv3.OpGet(k.rollout(att)), clientv3.OpGet(k.latest()),
		}
		for _, h := range w.Canaries {
			ops = append(ops, clientv3.OpGet(k.done(att, h)), clientv3.OpGet(k.host(h)))
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
		if len(r[4].GetResponseRange().Kvs) == 0 {
			// Pruned: the fleet has moved on by the window of attempts it
			// keeps. The pass asks again (a new attempt, if still wanted).
			return false, failure.AsOutage(fmt.Errorf("the rollout record of %s is gone (pruned): asking again", att))
		}
		if kvs := r[4].GetResponseRange().Kvs; kvs[0].ModRevision != w.modRev {
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
			done := decodeFirst[doneRecord](r[6+2*i].GetResponseRange().Kvs)
			st := decodeFirst[HostState](r[7+2*i].GetResponseRange().Kvs)
			switch {
			case done != nil && done.OK, st != nil && st.Live != nil && st.Live.Revision == rev:
			case done == nil && st == nil:
				missing, gone = append(missing, h), append(gone, h)
			default:
				missing = append(missing, h)
			}
		}
		specs := []watchSpec{prefixOf(k.rollout(att) + "/"), keyOf(k.rollout(att)), keyOf(k.halt(rev)), keyOf(k.latest())}
		for _, h := range w.Canaries {
			specs = append(specs, keyOf(k.host(h)))
		}
		if len(missing) > 0 {
			// A rollout begun after this one (latest) means the canaries
			// may never deploy this revision now. Only then: canaries
			// that proved it open the gate whatever began since, or a
			// stale host's rollout of an older revision would hold the
			// newer one's gate shut for good (found by chaos-fleet).
			if l := r[5].GetResponseRange().Kvs; len(l) > 0 && l[0].ModRevision > w.seq {
				if lr := decodeFirst[latestRecord](l); lr != nil && lr.Attempt != att {
					return false, failure.AsOutage(fmt.Errorf("%w (%s) while this host waited for %s's canaries: asking again",
						ErrSuperseded, short(lr.Revision), short(rev)))
				}
			}
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
			if err := c.promote(ctx, env, w); err != nil {
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

func (c *Client) promote(ctx context.Context, env string, w *Wave) error {
	k := c.keys(env)
	b, _ := json.Marshal(map[string]any{"at": c.now(), "by": c.cfg.Host})
	resp, err := c.txn(ctx, "open canary gate",
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(k.promoted(w.Attempt)), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(k.promoted(w.Attempt), string(b))})
	if err == nil && resp.Succeeded {
		c.log.Info("canaries passed: rollout goes on to the other hosts", "env", env, "commit", short(w.Revision))
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
			clientv3.Compare(clientv3.CreateRevision(k.pausing(w.Attempt)), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(k.promoted(w.Attempt)), "=", 0),
		},
		[]clientv3.Op{clientv3.OpPut(k.pausing(w.Attempt), string(b)), clientv3.OpPut(k.pauseTimer(w.Attempt), "", clientv3.WithLease(g.ID))})
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
	key := c.keys(env).rollout(w.Attempt)
	b, _ := json.Marshal(nw)
	_, err = c.txn(ctx, "replace canaries",
		[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", w.modRev)},
		[]clientv3.Op{clientv3.OpPut(key, string(b))})
	return err == nil, err
}
