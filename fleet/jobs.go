package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"berth.dev/berth/internal/failure"
)

// JobPolicy says how a job's scheduled times are claimed.
type JobPolicy struct {
	// StartingDeadline: a scheduled time is not started later than this
	// after it (0: no deadline). After an outage only the latest missed
	// time is still claimable, and only within it.
	StartingDeadline time.Duration
	// History is how many run records of the job stay in etcd (default
	// 100).
	History int
}

// Job run statuses kept in etcd. JobLost is never written: List reports a
// running record whose runner's lease is gone as lost.
const (
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
	JobLost      = "lost"
)

// ErrClaimed: the scheduled time (or a later one) is claimed already; skip
// it, another host runs it (or ran it).
var ErrClaimed = errors.New("scheduled time claimed already")

// ErrTooLate: the scheduled time is past its starting deadline.
var ErrTooLate = errors.New("scheduled time past its starting deadline")

// JobRecord is the fleet's record of one scheduled time of a job.
type JobRecord struct {
	Job       string    `json:"job"`
	Scheduled time.Time `json:"scheduled"`
	Host      string    `json:"host"`
	// Token is the claim's create revision: unique, growing.
	Token     int64     `json:"token"`
	Status    string    `json:"status"`
	Claimed   time.Time `json:"claimed"`
	Started   time.Time `json:"started,omitzero"`
	Ended     time.Time `json:"ended,omitzero"`
	ExitCode  int       `json:"exit_code"`
	Reason    string    `json:"reason,omitempty"`
	LeaseLost bool      `json:"lease_lost,omitempty"`
	// RunID is the run's id in the host's local job history.
	RunID string `json:"run_id,omitempty"`
	// Nonce marks the claim of one process: a host that finds its own
	// nonce (its claim's commit was ambiguous) adopts the claim.
	Nonce string `json:"nonce,omitempty"`
}

// JobResult is how a claimed run ended.
type JobResult struct {
	Status   string // JobSucceeded, JobFailed, or the local status (timed_out, interrupted…)
	ExitCode int
	Reason   string
	Started  time.Time
	Ended    time.Time
	RunID    string
}

// JobClaim is this host's claim on one scheduled time. Finish it once.
type JobClaim struct {
	Job       string
	Scheduled time.Time
	Token     int64

	c         *Client
	env       string
	policy    JobPolicy
	runKey    string
	activeKey string
	activeRev int64 // the active key's create revision (the token, unless adopted)
	rec       JobRecord
	lost      func() bool
	finished  bool
}

// ClaimJob claims scheduled time t of job for this host (FLEET-NOTES rule
// 2). t comes from the job's schedule, never from "now", so hosts with
// skewed clocks still name the same time; a time beyond etcd's clock plus
// ClockTolerance is refused (ErrClockAhead, which wraps ErrClaimed): a
// host whose clock is ahead never claims the fleet's future. The claim is a permanent key,
// created by compare-and-swap that also advances the job's high-water
// mark: a time at or before one already claimed is never claimed again
// (ErrClaimed), whatever clock a host has, and even after its record is
// pruned. A lease-bound key beside it shows the runner alive; losing it
// never frees the time for a second run.
func (c *Client) ClaimJob(ctx context.Context, env, job string, t time.Time, p JobPolicy) (*JobClaim, error) {
	now := c.now()
	if p.StartingDeadline > 0 && now.Sub(t) > p.StartingDeadline {
		return nil, fmt.Errorf("%w: %s is %s past, deadline %s", ErrTooLate, t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second), p.StartingDeadline)
	}
	if err := c.checkClaimTime(ctx, env, job, t); err != nil {
		return nil, err
	}
	// An earlier time of this job whose claim was ambiguous and not
	// adopted: the scheduler has moved on, so it never runs — settle it
	// now, before its active mark makes `concurrency: forbid` skip this one
	// on other hosts.
	c.settleEarlier(ctx, env, job, t)
	sess, err := c.Session(ctx)
	if err != nil {
		return nil, err
	}
	k := c.keys(env)
	runKey, lastKey, activeKey := k.jobRun(job, t), k.jobLast(job), k.jobActive(job, t)
	// The nonce marks this host's claim of t in this process: a claim
	// whose commit was ambiguous (etcd applied it, its reply was lost) is
	// found again by it, and adopted, instead of read as another's.
	nonce := c.claimNonce(env, job, t)
	for range 10 {
		resp, err := c.txn(ctx, "read job claim", nil, []clientv3.Op{clientv3.OpGet(lastKey), clientv3.OpGet(runKey)})
		if err != nil {
			return nil, err
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			if r := decodeFirst[JobRecord](kvs); r != nil && r.Nonce == nonce && r.Host == c.cfg.Host {
				return c.adoptClaim(ctx, sess, env, p, runKey, activeKey, kvs[0], *r)
			}
			c.dropPending(runKey, nonce)
			if r := decodeFirst[JobRecord](kvs); r != nil {
				return nil, fmt.Errorf("%w by %s", ErrClaimed, r.Host)
			}
			return nil, ErrClaimed
		}
		var lastMod int64
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			lastMod = kvs[0].ModRevision
			if last := decodeFirst[JobRecord](kvs); last != nil && !t.After(last.Scheduled) {
				c.dropPending(runKey, nonce)
				return nil, fmt.Errorf("%w: a later time (%s) was claimed by %s", ErrClaimed, last.Scheduled.UTC().Format(time.RFC3339), last.Host)
			}
		}
		rec := JobRecord{Job: job, Scheduled: t, Host: c.cfg.Host, Status: JobRunning, Claimed: now, Nonce: nonce}
		b, _ := json.Marshal(rec)
		tr, err := c.txnSess(ctx, sess, "claim job",
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(lastKey), "=", lastMod),
				clientv3.Compare(clientv3.CreateRevision(runKey), "=", 0),
			},
			[]clientv3.Op{
				clientv3.OpPut(runKey, string(b)),
				clientv3.OpPut(lastKey, string(b)),
				clientv3.OpPut(activeKey, c.cfg.Host, clientv3.WithLease(sess.Lease())),
			})
		if err != nil {
			if failure.IsOutage(err) && !errors.Is(err, ErrSessionLost) && ctx.Err() == nil {
				// The claim may have landed: read again (now, or on the
				// caller's next try) and adopt it if it did.
				c.notePending(env, job, t, nonce)
				c.log.Warn("job claim's outcome unknown (etcd's reply lost); reading it again", "env", env, "job", job, "scheduled", t, "error", err)
				continue
			}
			return nil, err
		}
		if !tr.Succeeded {
			continue
		}
		c.dropPending(runKey, nonce)
		rec.Token = tr.Header.Revision
		jc := &JobClaim{Job: job, Scheduled: t, Token: tr.Header.Revision, c: c, env: env, policy: p,
			runKey: runKey, activeKey: activeKey, activeRev: tr.Header.Revision, rec: rec}
		jc.lost = c.watchLoss(sess, "job runner lost its etcd lease mid-run: the run goes on and is not repeated elsewhere; its record will say so",
			"env", env, "job", job, "scheduled", t)
		return jc, nil
	}
	return nil, failure.AsOutage(errors.New("claim job: the claim kept changing under contention"))
}

// Finish writes the run's result over its claim, by compare-and-swap. If
// the runner's lease-bound key is gone (the lease expired mid-run: the
// host was paused, cut off or slow), the record says so. The oldest
// finished records beyond the history length are pruned.
//
// A zero JobClaim (a test fake's) finishes as a no-op.
func (j *JobClaim) Finish(ctx context.Context, r JobResult) error {
	if j == nil || j.finished || j.c == nil {
		return nil
	}
	j.finished = true
	c := j.c
	rec := j.rec
	rec.Status, rec.ExitCode, rec.Reason = r.Status, r.ExitCode, r.Reason
	rec.Started, rec.Ended, rec.RunID = r.Started, r.Ended, r.RunID
	if rec.Ended.IsZero() {
		rec.Ended = c.now()
	}
	if j.lost() {
		markLost(&rec)
	}
	queued, err := c.later(ctx, "job result "+j.Job, func(ctx context.Context) error {
		for range 3 {
			b, _ := json.Marshal(rec)
			tr, err := c.txn(ctx, "write job result",
				[]clientv3.Cmp{
					clientv3.Compare(clientv3.ModRevision(j.runKey), "=", j.Token),
					clientv3.Compare(clientv3.CreateRevision(j.activeKey), "=", j.activeRev),
				},
				[]clientv3.Op{clientv3.OpPut(j.runKey, string(b)), clientv3.OpDelete(j.activeKey)},
				clientv3.OpGet(j.runKey, clientv3.WithKeysOnly()))
			if err != nil {
				return err
			}
			if tr.Succeeded {
				return nil
			}
			kvs := tr.Responses[0].GetResponseRange().Kvs
			if len(kvs) == 0 || kvs[0].ModRevision != j.Token {
				c.log.Warn("job result not written: its record changed or was pruned", "env", j.env, "job", j.Job)
				return nil
			}
			markLost(&rec) // the record is ours, the lease-bound key is not
			b, _ = json.Marshal(rec)
			tr, err = c.txn(ctx, "write job result",
				[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(j.runKey), "=", j.Token)},
				[]clientv3.Op{clientv3.OpPut(j.runKey, string(b))})
			if err != nil || tr.Succeeded {
				return err
			}
		}
		return errors.New("write job result: record kept changing")
	})
	if err != nil {
		return err
	}
	if !queued {
		c.pruneJob(ctx, j.env, j.Job, j.policy.History)
	}
	return nil
}

func markLost(r *JobRecord) {
	if r.LeaseLost {
		return
	}
	r.LeaseLost = true
	note := "lease lost: the runner's etcd lease expired mid-run; the time was not run again elsewhere"
	if r.Reason == "" {
		r.Reason = note
	} else {
		r.Reason += "; " + note
	}
}

// pruneJob deletes the oldest records beyond keep, never one whose runner
// is alive.
func (c *Client) pruneJob(ctx context.Context, env, job string, keep int) {
	if keep <= 0 {
		keep = 100
	}
	k := c.keys(env)
	resp, err := c.get(ctx, k.jobRuns(job), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil || len(resp.Kvs) <= keep {
		return
	}
	for _, kv := range resp.Kvs[:len(resp.Kvs)-keep] {
		key := string(kv.Key)
		active := k.job(job) + "/active/" + strings.TrimPrefix(key, k.jobRuns(job))
		_, _ = c.txn(ctx, "prune job record",
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision),
				clientv3.Compare(clientv3.CreateRevision(active), "=", 0),
			},
			[]clientv3.Op{clientv3.OpDelete(key)})
	}
}

// JobRuns returns the job's records in etcd, newest first (at most limit;
// 0: all). A running record whose runner's lease is gone shows as lost.
func (c *Client) JobRuns(ctx context.Context, env, job string, limit int) ([]JobRecord, error) {
	k := c.keys(env)
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := c.txn(ctx, "read job records", nil, []clientv3.Op{
		clientv3.OpGet(k.jobRuns(job), opts...),
		clientv3.OpGet(k.job(job)+"/active/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	})
	if err != nil {
		return nil, err
	}
	active := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		active[strings.TrimPrefix(string(kv.Key), k.job(job)+"/active/")] = true
	}
	var out []JobRecord
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var r JobRecord
		if json.Unmarshal(kv.Value, &r) != nil {
			continue
		}
		r.Token = kv.CreateRevision
		showLost(&r, active[strings.TrimPrefix(string(kv.Key), k.jobRuns(job))])
		out = append(out, r)
	}
	return out, nil
}

// showLost shows a running record whose runner's lease is gone as lost.
func showLost(r *JobRecord, active bool) {
	if r.Status == JobRunning && !active {
		r.Status = JobLost
		r.Reason = "its runner's lease expired before it reported a result (the host died, or was paused or cut off)"
	}
}

// JobActive reports whether some host is running the job now (its
// runner's lease alive): what `concurrency: forbid` checks fleet-wide.
func (c *Client) JobActive(ctx context.Context, env, job string) (bool, error) {
	resp, err := c.get(ctx, c.keys(env).job(job)+"/active/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}

// ActiveJob is a run of a job whose runner's lease is alive.
type ActiveJob struct {
	Scheduled time.Time
	Host      string
	Token     int64 // the claim's token (the active key shares its revision)
}

// JobActiveRuns lists the job's runs whose runners are alive now, on
// any host: what `concurrency: forbid` checks fleet-wide after a claim.
func (c *Client) JobActiveRuns(ctx context.Context, env, job string) ([]ActiveJob, error) {
	pfx := c.keys(env).job(job) + "/active/"
	resp, err := c.get(ctx, pfx, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	var out []ActiveJob
	for _, kv := range resp.Kvs {
		t, err := time.Parse(timeKeyLayout, strings.TrimPrefix(string(kv.Key), pfx))
		if err != nil {
			continue
		}
		out = append(out, ActiveJob{Scheduled: t, Host: string(kv.Value), Token: kv.CreateRevision})
	}
	return out, nil
}
