package jobs

import (
	"context"
	"errors"
	"time"
)

// Fleet is the fleet's side of scheduled jobs (DESIGN §8, FLEET-NOTES
// rule 2): which host runs each scheduled time of a `run_on: one` job, and
// the fleet's run records. fleetjobs.Adapter (over *fleet.Client) is one;
// unit tests use fakes. This package never talks to etcd itself.
//
// Errors: ErrClaimed and ErrTooLate as below; an etcd that does not answer
// is an outage (failure.IsOutage): the scheduler waits, bounded by the
// job's starting deadline.
type Fleet interface {
	// Host is this agent's name in the fleet.
	Host() string
	// Claim claims scheduled time t of job for this host, under a lease.
	// The claim is permanent: losing the lease mid-run never hands t to
	// another host.
	Claim(ctx context.Context, env, job string, t time.Time, p FleetPolicy) (Claim, error)
	// LastScheduled is the latest scheduled time of job the fleet has a
	// record of, whoever claimed it (zero: none).
	LastScheduled(ctx context.Context, env, job string) (time.Time, error)
	// Active lists the runs of job whose runners are alive now, on every
	// host (this one's included).
	Active(ctx context.Context, env, job string) ([]FleetActive, error)
}

// Claim is this host's claim on one scheduled time. Finish it once.
type Claim interface {
	// Token is the claim's fencing token: unique and growing per fleet.
	// A run gets it as BERTH_FENCE_TOKEN.
	Token() int64
	// Finish writes how the run ended over the claim (kept and written
	// later when etcd is unreachable).
	Finish(ctx context.Context, r Run) error
}

// FleetPolicy says how a job's scheduled times are claimed.
type FleetPolicy struct {
	// StartingDeadline: the time is not started later than this after it.
	StartingDeadline time.Duration
	// History is how many of the job's records the fleet keeps.
	History int
}

// FleetActive is a run whose runner is alive.
type FleetActive struct {
	Scheduled time.Time
	Host      string
	Token     int64
}

// fleetForgetter is a Fleet that forgets the records of jobs no longer
// defined (fleetjobs.Adapter does); the scheduler offers it the jobs of
// each new revision.
type fleetForgetter interface {
	ForgetJobs(ctx context.Context, env string, keep []string) error
}

// forgetRemoved lets the fleet forget the records of jobs the live
// revision no longer defines (it keeps them until no host can claim one
// of their times any more). s.mu is held; the call runs in the background.
func (s *Scheduler) forgetRemoved(want map[string]bool) {
	f, ok := s.Fleet.(fleetForgetter)
	if !ok {
		return
	}
	keep := make([]string, 0, len(want))
	for name := range want {
		keep = append(keep, name)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := f.ForgetJobs(ctx, s.Env, keep); err != nil {
			s.Log.Debug("job: the fleet's records of removed jobs not pruned (etcd); next revision tries again", "error", err)
		}
	}()
}

// ErrClaimed: another host claimed the scheduled time (or a later one).
var ErrClaimed = errors.New("claimed by another host")

// ErrTooLate: the scheduled time is past its starting deadline.
var ErrTooLate = errors.New("past its starting deadline")

// FenceEnv is the variable a fleet run's container gets its fencing token
// in: a job that writes somewhere with its own lock can refuse a write
// from a token older than one it has seen (FLEET-NOTES: an etcd lock is
// not mutual exclusion by itself).
const FenceEnv = "BERTH_FENCE_TOKEN"
