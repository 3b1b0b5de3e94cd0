// Package fleetjobs lets the job scheduler (package jobs) coordinate
// through the fleet (package fleet): Adapter is a jobs.Fleet over a
// *fleet.Client. It is a package of its own so that neither jobs imports
// etcd nor fleet imports the engine.
package fleetjobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/jobs"
)

// Adapter is a jobs.Fleet over the agent's fleet client.
type Adapter struct {
	C *fleet.Client
}

var _ jobs.Fleet = Adapter{}

// Host is this agent's name in the fleet.
func (a Adapter) Host() string { return a.C.Host() }

// Claim claims scheduled time t of job (fleet.Client.ClaimJob).
func (a Adapter) Claim(ctx context.Context, env, job string, t time.Time, p jobs.FleetPolicy) (jobs.Claim, error) {
	c, err := a.C.ClaimJob(ctx, env, job, t, fleet.JobPolicy{StartingDeadline: p.StartingDeadline, History: p.History})
	switch {
	case errors.Is(err, fleet.ErrClaimed):
		return nil, fmt.Errorf("%w: %w", jobs.ErrClaimed, err)
	case errors.Is(err, fleet.ErrTooLate):
		return nil, fmt.Errorf("%w: %w", jobs.ErrTooLate, err)
	case err != nil:
		return nil, err
	}
	return claim{c}, nil
}

// LastScheduled is the scheduled time of the fleet's newest record of job.
func (a Adapter) LastScheduled(ctx context.Context, env, job string) (time.Time, error) {
	recs, err := a.C.JobRuns(ctx, env, job, 1)
	if err != nil || len(recs) == 0 {
		return time.Time{}, err
	}
	return recs[0].Scheduled, nil
}

// Active lists the job's runs whose runners are alive.
func (a Adapter) Active(ctx context.Context, env, job string) ([]jobs.FleetActive, error) {
	act, err := a.C.JobActiveRuns(ctx, env, job)
	if err != nil {
		return nil, err
	}
	out := make([]jobs.FleetActive, 0, len(act))
	for _, x := range act {
		out = append(out, jobs.FleetActive{Scheduled: x.Scheduled, Host: x.Host, Token: x.Token})
	}
	return out, nil
}

// ForgetJobs forgets the fleet's records of jobs not in keep, once no
// host can still claim one of their times (fleet.Client.ForgetJobs).
func (a Adapter) ForgetJobs(ctx context.Context, env string, keep []string) error {
	return a.C.ForgetJobs(ctx, env, keep)
}

type claim struct{ c *fleet.JobClaim }

func (c claim) Token() int64 { return c.c.Token }

// Finish writes the run's result over the claim.
func (c claim) Finish(ctx context.Context, r jobs.Run) error {
	res := fleet.JobResult{Status: string(r.Status), Reason: r.Reason, Started: r.Started, Ended: r.Finished, RunID: r.ID}
	switch r.Status {
	case jobs.StatusSucceeded:
		res.Status = fleet.JobSucceeded
	case jobs.StatusFailed:
		res.Status = fleet.JobFailed
	}
	if r.ExitCode != nil {
		res.ExitCode = *r.ExitCode
	}
	return c.c.Finish(ctx, res)
}
