package migrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/failure"
)

// Fleet runs a migration once per fleet; *fleet.Client is one.
type Fleet interface {
	Migrate(ctx context.Context, env string, m fleet.Migration, run fleet.RunFunc) (fleet.MigrationOutcome, error)
}

// FenceTokenEnv is the variable a fleet's migration container gets: the
// lock's revision in etcd, growing with every new runner, so a migration
// tool with a lock of its own can refuse a stale runner.
const FenceTokenEnv = "BERTH_FENCE_TOKEN"

// runFleet runs one migration through the fleet: here (with
// BERTH_FENCE_TOKEN), or not at all because it already ran (the
// record says which), or it failed there or was interrupted (a verdict,
// without running it).
func (r *Runner) runFleet(ctx context.Context, j Job, timeout time.Duration) (Record, error) {
	s := j.Service
	m := fleet.Migration{Service: s.Name, Image: s.Config.Image, Entrypoint: s.Config.Entrypoint, Command: s.Config.Command,
		Idempotent: s.Berth.Migration.Idempotent}
	if j.Request != nil && j.Request.Config != nil {
		m.Revision = j.Request.Config.Labels[engine.LabelRevision]
	}
	rec := Record{Service: s.Name}
	ran, started := false, false
	out, err := r.Fleet.Migrate(ctx, r.Env, m, func(ctx context.Context, token int64) error {
		ran = true
		req := fenced(j.Request, token)
		o := engine.OneShot{Timeout: timeout, Grace: r.Grace, Secrets: j.Secrets, Started: func(string) { started = true }}
		res, err := r.Engine.RunOnce(ctx, req, o)
		if err != nil {
			if !started {
				return fmt.Errorf("%w: %w", fleet.ErrNotStarted, err)
			}
			return err
		}
		rec = Record{Service: s.Name, ExitCode: res.ExitCode, TimedOut: res.TimedOut, Duration: res.Duration,
			Output: string(res.Output), StdoutDropped: res.StdoutDropped, StderrDropped: res.StderrDropped}
		switch {
		case res.Stopped != nil:
			rec.Interrupted = res.Stopped.Error()
			return fmt.Errorf("stopped: %w", res.Stopped)
		case res.TimedOut:
			return failure.AsVerdict(fmt.Errorf("timed out after %s", timeout))
		case res.ExitCode != 0:
			return failure.AsVerdict(fmt.Errorf("exited with code %d", res.ExitCode))
		}
		return nil
	})
	var merr *fleet.MigrationError
	switch {
	case err == nil && !out.Ran:
		rec.Skipped = "ran on host " + out.State.Host
		if !out.State.Ended.IsZero() {
			rec.Skipped += " at " + out.State.Ended.UTC().Format(time.RFC3339)
		}
		r.log().Info("migration skipped: it already ran in the fleet (ran_on may be this host, in an earlier pass)", "service", s.Name, "ran_on", out.State.Host)
		return rec, nil
	case err == nil:
		return rec, nil
	case !ran && errors.As(err, &merr):
		// Settled elsewhere: refused without running it.
		rec.Skipped = "not run: " + merr.Error()
		r.log().Warn("migration not run: the fleet refuses it", "service", s.Name, "status", merr.State.Status, "host", merr.State.Host)
		return rec, failure.AsVerdict(fmt.Errorf("migrate %s: %w", s.Name, err))
	}
	// The journal must not read a migration that never started as a run
	// (an empty record, exit 0).
	if !started && rec.Skipped == "" {
		rec.Skipped = "not started: see the pass's reason"
	}
	switch {
	case failure.IsVerdict(err) && !failure.IsOutage(err), ctx.Err() != nil:
		return rec, fmt.Errorf("migrate %s: %w", s.Name, err)
	case !ran:
		return rec, fmt.Errorf("migrate %s: waiting for etcd: %w", s.Name, err)
	}
	return rec, fmt.Errorf("migrate %s: %w", s.Name, err)
}

// fenced is req with BERTH_FENCE_TOKEN set (a copy: the deploy's own
// request is left alone).
func fenced(req *engine.Request, token int64) *engine.Request {
	if req == nil {
		return nil
	}
	out := *req
	if req.Config != nil {
		cfg := *req.Config
		cfg.Env = append(slices.DeleteFunc(slices.Clone(req.Config.Env), func(e string) bool {
			return len(e) > len(FenceTokenEnv) && e[:len(FenceTokenEnv)+1] == FenceTokenEnv+"="
		}), FenceTokenEnv+"="+strconv.FormatInt(token, 10))
		cfg.Labels = maps.Clone(req.Config.Labels)
		out.Config = &cfg
	}
	return &out
}

func (r *Runner) log() hclog.Logger {
	if r.Log == nil {
		return hclog.NewNullLogger()
	}
	return r.Log
}
