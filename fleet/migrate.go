package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"berth.dev/berth/internal/failure"
)

// Migration identifies one migration of an env: the same service, image
// (by digest) and command run once per fleet.
type Migration struct {
	Service    string
	Image      string
	Entrypoint []string
	Command    []string
	// Idempotent lets another host take over when the runner loses its
	// lease mid-run (x-berth: {migration: {idempotent: true}} on the
	// service). Without it such a migration is interrupted and the fleet
	// halts until `berth retry`.
	Idempotent bool
	// Revision is the revision that reached it, for the record.
	Revision string
}

// ID is the migration's key: a hash of service, image, entrypoint and
// command, the same as migrate's local ledger key.
func (m Migration) ID() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", m.Service, m.Image, strings.Join(m.Entrypoint, "\x01"), strings.Join(m.Command, "\x01"))
	return hex.EncodeToString(h.Sum(nil))
}

// Migration statuses, as kept in the permanent state key.
const (
	MigrationRunning     = "running"
	MigrationDone        = "done"
	MigrationFailed      = "failed"
	MigrationInterrupted = "interrupted"
)

// MigrationState is the fleet's permanent record of one migration.
type MigrationState struct {
	ID       string    `json:"id"`
	Status   string    `json:"status"`
	Service  string    `json:"service"`
	Image    string    `json:"image"`
	Revision string    `json:"revision,omitempty"`
	Host     string    `json:"host"`
	Token    int64     `json:"token"` // the lock's revision: BERTH_FENCE_TOKEN
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	Note     string    `json:"note,omitempty"`
	// Halted is the revision an interrupted mark halted: the runner's
	// late result, written under its token, lifts that halt.
	Halted string `json:"halted,omitempty"`
	// Used is the newest revision that found it done (pruning keeps the
	// migrations kept revisions use).
	Used string `json:"used,omitempty"`
}

// MigrationOutcome says what Migrate did when it returned no error.
type MigrationOutcome struct {
	// Ran: this host ran it, now. Otherwise it was done already.
	Ran   bool
	State MigrationState
}

// MigrationError is the fleet refusing a migration: it failed (on any
// host), or it was interrupted and is not idempotent. It is a verdict.
type MigrationError struct{ State MigrationState }

func (e *MigrationError) Error() string {
	s := e.State
	switch s.Status {
	case MigrationFailed:
		return fmt.Sprintf("migration %s failed on host %s: %s", s.Service, s.Host, s.Reason)
	case MigrationInterrupted:
		return fmt.Sprintf("migration %s was interrupted on host %s (%s): the fleet holds it until `berth retry` "+
			"(check the database first), or declare it idempotent (x-berth: {migration: {idempotent: true}})", s.Service, s.Host, s.Reason)
	}
	return fmt.Sprintf("migration %s: %s on host %s", s.Service, s.Status, s.Host)
}

// ErrNotStarted, wrapped by a run function's error, says the migration
// never started (its image could not be pulled, the engine did not
// answer): the fleet forgets the attempt instead of calling it
// interrupted.
var ErrNotStarted = errors.New("migration did not start")

// RunFunc runs a migration. token is the fencing token, to be passed to
// the container (BERTH_FENCE_TOKEN) so a tool with its own lock can refuse
// a stale runner. A nil error means done; a verdict (failure.AsVerdict:
// non-zero exit, timeout) means failed; an error wrapping ErrNotStarted
// means it never ran; anything else means interrupted — it may have run
// partly.
type RunFunc func(ctx context.Context, token int64) error

// Migrate runs m once per fleet (FLEET-NOTES rule 3):
//  1. take the migration's lock (waiting on a watch behind one
//     predecessor; a waiter also wakes when the state key settles);
//  2. re-read the permanent state: done → skip; failed → refuse
//     (verdict); running with the lock free → its runner lost its lease:
//     mark it interrupted; interrupted → refuse (verdict), unless the
//     migration is idempotent, then take it over;
//  3. write running{host, token} guarded by owning the lock;
//  4. run it; write done, failed or interrupted by compare-and-swap on the
//     running record (from the outbox if etcd is unreachable by then).
//
// Losing the lease mid-run does not stop the run: killing a migration
// half-way is worse than finishing it. Its result is written when it
// ends; if another host marked it interrupted meanwhile, the result
// replaces that mark (no other host can have run it: interrupted is
// never taken over unless idempotent).
func (c *Client) Migrate(ctx context.Context, env string, m Migration, run RunFunc) (MigrationOutcome, error) {
	k := c.keys(env)
	id := m.ID()
	stateKey := k.migState(id)
	st, mod, _, err := c.readMigration(ctx, stateKey)
	if err != nil {
		return MigrationOutcome{}, err
	}
	if st != nil && settled(st, m.Idempotent) {
		c.touchMigration(ctx, stateKey, *st, mod, m.Revision)
		return settledOutcome(*st)
	}
	sess, err := c.Session(ctx)
	if err != nil {
		return MigrationOutcome{}, err
	}
	// Results and releases kept from before go first: a release of this
	// session's lock key still in the outbox would otherwise delete the
	// key this call is about to reuse.
	if err := c.Flush(ctx); err != nil {
		return MigrationOutcome{}, err
	}
	stop := func(ctx context.Context) (bool, int64, error) {
		st, _, rev, err := c.readMigration(ctx, stateKey)
		return st != nil && settled(st, m.Idempotent), rev, err
	}
	l, err := c.acquire(ctx, sess, k.migLock(id), stop, keyOf(stateKey))
	if errors.Is(err, errStopped) {
		st, _, _, err := c.readMigration(ctx, stateKey)
		if err != nil {
			return MigrationOutcome{}, err
		}
		return settledOutcome(*st)
	}
	if err != nil {
		return MigrationOutcome{}, err
	}
	// The lock is released once the result is written: a result kept for
	// later (etcd unreachable) keeps the lock too, so no host reads the
	// "running" record as abandoned while the result waits. The outbox
	// releases it after writing the result; the lease bounds it anyway.
	keep := false
	defer func() {
		if !keep {
			l.release()
		}
	}()

	for {
		st, modRev, _, err := c.readMigration(ctx, stateKey)
		if err != nil {
			return MigrationOutcome{}, err
		}
		var prev *MigrationState
		if st != nil {
			switch st.Status {
			case MigrationDone, MigrationFailed:
				return settledOutcome(*st)
			case MigrationRunning:
				if st.Token == l.rev {
					// Our own run, under this very lock key: its result
					// waits in our outbox. Write it, then read again.
					if err := c.Flush(ctx); err != nil {
						return MigrationOutcome{}, err
					}
					continue
				}
				// We hold the lock, so the runner's lock key is gone:
				// it lost its lease. Whether it finished is unknown.
				it := *st
				it.Status = MigrationInterrupted
				it.Ended = c.now()
				it.Reason = fmt.Sprintf("its runner on %s lost its etcd lease mid-run (died, paused or cut off); whether it completed is unknown", st.Host)
				var halt []clientv3.Op
				if !m.Idempotent && m.Revision != "" {
					// The interruption halts the revision, naming itself
					// as the cause: the runner's late result lifts it.
					it.Halted = m.Revision
					b, _ := json.Marshal(Halt{Revision: m.Revision, Host: c.cfg.Host, At: c.now(), Migration: id, Token: st.Token,
						Reason: (&MigrationError{State: it}).Error()})
					hk := k.halt(m.Revision)
					halt = append(halt, clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(hk), "=", 0)},
						[]clientv3.Op{clientv3.OpPut(hk, string(b))}, nil))
				}
				ok, rev, err := c.casMigration(ctx, stateKey, modRev, it, halt, l.isOwner())
				if err != nil {
					return MigrationOutcome{}, err
				}
				if !ok {
					continue
				}
				c.log.Warn("migration interrupted: its runner lost its lease", "env", env, "service", m.Service, "runner", st.Host, "token", st.Token)
				st, modRev = &it, rev
			}
			if st.Status == MigrationInterrupted {
				if !m.Idempotent {
					return MigrationOutcome{}, failure.AsVerdict(&MigrationError{State: *st})
				}
				prev = st
			}
		}
		running := MigrationState{ID: id, Status: MigrationRunning, Service: m.Service, Image: m.Image, Revision: m.Revision,
			Host: c.cfg.Host, Token: l.rev, Started: c.now()}
		if prev != nil {
			running.Note = fmt.Sprintf("took over from %s (token %d) after it lost its lease; the migration is declared idempotent", prev.Host, prev.Token)
			c.log.Info("taking over an interrupted idempotent migration", "env", env, "service", m.Service, "from", prev.Host)
		}
		ok, runningRev, err := c.casMigration(ctx, stateKey, modRev, running, nil, l.isOwner())
		if err != nil {
			return MigrationOutcome{}, err
		}
		if !ok {
			if lost, err := c.lockLost(ctx, l); err != nil || lost {
				return MigrationOutcome{}, errors.Join(err, failure.AsOutage(ErrSessionLost))
			}
			continue // the state moved under us: read it again
		}
		out, queued, err := c.runMigration(ctx, env, sess, l, stateKey, runningRev, running, prev, run)
		keep = queued
		return out, err
	}
}

// runMigration runs it and writes the result; queued says the result
// (and the lock's release) waits in the outbox.
func (c *Client) runMigration(ctx context.Context, env string, sess *concurrency.Session, l *lock, stateKey string, runningRev int64,
	running MigrationState, prev *MigrationState, run RunFunc) (MigrationOutcome, bool, error) {
	c.log.Info("running migration for the fleet", "env", env, "service", running.Service, "token", running.Token)
	lost := c.watchLoss(sess, "migration runner lost its etcd lease mid-run: the run goes on, other hosts see it interrupted, and its result is written by compare-and-swap",
		"env", env, "service", running.Service, "token", running.Token)
	runErr := run(ctx, running.Token)
	lost()

	res := running
	res.Ended = c.now()
	switch {
	case runErr == nil:
		res.Status = MigrationDone
	case errors.Is(runErr, ErrNotStarted):
		// Forget the attempt: put back what was there.
		queued, werr := c.later(ctx, "reset migration "+running.Service, func(ctx context.Context) error {
			var ops []clientv3.Op
			if prev != nil {
				b, _ := json.Marshal(prev)
				ops = append(ops, clientv3.OpPut(stateKey, string(b)))
			} else {
				ops = append(ops, clientv3.OpDelete(stateKey))
			}
			_, err := c.txn(ctx, "reset migration", []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(stateKey), "=", runningRev)}, ops)
			if err == nil {
				l.release()
			}
			return err
		})
		return MigrationOutcome{}, queued, errors.Join(runErr, werr)
	case failure.IsVerdict(runErr):
		res.Status, res.Reason = MigrationFailed, runErr.Error()
	default:
		res.Status, res.Reason = MigrationInterrupted, "the run ended without a result: "+runErr.Error()
	}
	queued, werr := c.later(ctx, "migration result "+running.Service, func(ctx context.Context) error {
		err := c.finishMigration(ctx, env, stateKey, runningRev, res)
		if err == nil {
			l.release()
		}
		return err
	})
	if runErr != nil {
		return MigrationOutcome{}, queued, errors.Join(runErr, werr)
	}
	return MigrationOutcome{Ran: true, State: res}, queued, werr
}

// casMigration writes st, and the ops, if the state key's mod revision is
// still modRev and every extra comparison holds.
func (c *Client) casMigration(ctx context.Context, key string, modRev int64, st MigrationState, ops []clientv3.Op, also ...clientv3.Cmp) (bool, int64, error) {
	b, _ := json.Marshal(st)
	cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}, also...)
	resp, err := c.txn(ctx, "write migration state", cmps, append([]clientv3.Op{clientv3.OpPut(key, string(b))}, ops...))
	if err != nil {
		return false, 0, err
	}
	return resp.Succeeded, resp.Header.Revision, nil
}

// readMigration reads the state key: the state (nil if none), its mod
// revision (0 if none) and the revision read at.
func (c *Client) readMigration(ctx context.Context, key string) (*MigrationState, int64, int64, error) {
	resp, err := c.get(ctx, key)
	if err != nil {
		return nil, 0, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, resp.Header.Revision, nil
	}
	var st MigrationState
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return nil, 0, 0, fmt.Errorf("migration state %s: %w", key, err)
	}
	return &st, resp.Kvs[0].ModRevision, resp.Header.Revision, nil
}

func (c *Client) lockLost(ctx context.Context, l *lock) (bool, error) {
	resp, err := c.get(ctx, l.key, clientv3.WithKeysOnly())
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.rev, nil
}

// settled: nothing is left to wait for.
func settled(st *MigrationState, idempotent bool) bool {
	switch st.Status {
	case MigrationDone, MigrationFailed:
		return true
	case MigrationInterrupted:
		return !idempotent
	}
	return false
}

func settledOutcome(st MigrationState) (MigrationOutcome, error) {
	if st.Status == MigrationDone {
		return MigrationOutcome{State: st}, nil
	}
	return MigrationOutcome{}, failure.AsVerdict(&MigrationError{State: st})
}

// Migrations lists env's migration records (for status).
func (c *Client) Migrations(ctx context.Context, env string) ([]MigrationState, error) {
	resp, err := c.get(ctx, c.keys(env).root+"/migrate/", clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []MigrationState
	for _, kv := range resp.Kvs {
		if !strings.HasSuffix(string(kv.Key), "/state") {
			continue
		}
		var st MigrationState
		if json.Unmarshal(kv.Value, &st) == nil {
			out = append(out, st)
		}
	}
	return out, nil
}

// watchLoss logs msg once if sess dies before the returned function is
// called; that function reports whether it did.
func (c *Client) watchLoss(sess *concurrency.Session, msg string, kv ...any) func() bool {
	done := make(chan struct{})
	var lost atomic.Bool
	go func() {
		select {
		case <-sess.Done():
			lost.Store(true)
			c.log.Warn(msg, kv...)
		case <-done:
		}
	}()
	return func() bool {
		close(done)
		return lost.Load()
	}
}
