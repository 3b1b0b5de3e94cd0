package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

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

// Wave is the permanent record of one attempt of one revision's rollout:
// it fixes the canaries and max_parallel (as a number) once, when the
// first host reaches the revision, so every host applies the same
// numbers.
type Wave struct {
	Revision string `json:"revision"`
	// Attempt names this rollout of the revision (its key): the revision
	// and the epoch it started in.
	Attempt         string        `json:"attempt,omitempty"`
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
	// Migration and Token name the interrupted migration run that caused
	// the halt, if one did: that run's late result lifts it.
	Migration string `json:"migration,omitempty"`
	Token     int64  `json:"token,omitempty"`
}

// latestRecord names the env's newest rollout attempt.
type latestRecord struct {
	Attempt  string `json:"attempt"`
	Revision string `json:"revision"`
}

// ErrSuperseded: a newer rollout began while this host waited for an
// older one's canaries, which may never deploy it. Nothing failed: the
// host asks again, for the revision it wants now. (Wrapped as an
// outage: the pass ends and is tried again.)
var ErrSuperseded = errors.New("a newer rollout began")

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
	// record), WaitingForEtcd while etcd does not answer, and "" when it
	// stops waiting.
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
	// At is the etcd revision of the read or transaction that let the
	// host in (its slot's take, the view that showed its grant, the halt
	// check): a halt created after it did not stop this deploy, one
	// created at or before it did. The fault harness orders deploys
	// against halts with it.
	At int64

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
	// What it waits for goes to req.Waiting, and "waiting for etcd" over
	// it while etcd is silent (a host queued when etcd went away sits in
	// a watch that asks nothing), the reason coming back after.
	wait, stop := c.noteWaits(req.Waiting)
	defer stop()
	sess, err := c.Session(ctx)
	if err != nil {
		return nil, err
	}
	// One read for the epoch (which names the attempt), the attempt's
	// record as of the epoch this host saw last (almost always the
	// current one), the halt and the good revision: a rollout of 1,000
	// hosts is 1,000 of each read, and each round trip counts.
	k := c.keys(env)
	guess := c.epochSeen(env)
	att := attemptID(req.Revision, guess)
	resp, err := c.txn(ctx, "read rollout state", nil, []clientv3.Op{
		clientv3.OpGet(k.epoch(), clientv3.WithKeysOnly()), clientv3.OpGet(k.halt(req.Revision)), clientv3.OpGet(k.good()),
		clientv3.OpGet(k.rollout(att)), clientv3.OpGet(k.creating(att), clientv3.WithCountOnly())})
	if err != nil {
		return nil, err
	}
	c.step("read")
	r := resp.Responses
	var epoch int64
	if kvs := r[0].GetResponseRange().Kvs; len(kvs) > 0 {
		epoch = kvs[0].ModRevision
	}
	c.epochs.Store(env, epoch)
	halt := decodeFirst[Halt](r[1].GetResponseRange().Kvs)
	good := decodeFirst[Good](r[2].GetResponseRange().Kvs)
	var pre *waveRead
	if epoch == guess {
		pre = &waveRead{record: r[3].GetResponseRange(), making: r[4].GetResponseRange(), rev: resp.Header.Revision}
	}
	w, err := c.wave(ctx, env, sess, req, epoch, pre)
	if err != nil {
		return nil, err
	}
	c.step("record")
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
			// A joining host counts against max_parallel like any other:
			// it takes a slot under the rollout's numbers (a scale-out of
			// 20 hosts mid-rollout must not deploy 20 at once).
			a := &Admission{Revision: good.Revision, Joining: true, Slot: -1, At: resp.Header.Revision, c: c, env: env, wave: w}
			if err := c.takeSlot(ctx, env, sess, a, wait); err != nil {
				return nil, err
			}
			return a, nil
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

func decodeWave(b []byte, seq, mod int64) (*Wave, error) {
	var w Wave
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("rollout record: %w", err)
	}
	w.seq, w.modRev = seq, mod
	if w.Attempt == "" { // a record from before attempts: keyed by its revision
		w.Attempt = seg(w.Revision)
	}
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
