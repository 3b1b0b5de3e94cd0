// Package operator owns what an operator's command asks of the fleet,
// beyond this host's state dir (package statedir takes this host's
// requests): the fleet-wide pause, resume, retry and rollback, the fleet's
// view and its job history, each within Timeout so that a command never
// waits on etcd for ever, and who the operator is.
package operator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/daemon"
	"berth.dev/berth/fleet"
	"berth.dev/berth/status"
)

// Timeout bounds a command's work against etcd (and Git, for a rollback).
const Timeout = 30 * time.Second

// ErrNoFleet: the agent config has no fleet: block (a configuration
// error of the command, exit 3).
var ErrNoFleet = errors.New("the agent config has no fleet: block (docs/fleet.md)")

// Who names who runs a command: the sudo user or the user, at this host.
func Who() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}

// do runs op against the fleet of cfg within Timeout; an etcd that does
// not answer is said plainly.
func do(ctx context.Context, cfg *agentconfig.Config, op func(context.Context, *fleet.Client) error) error {
	if cfg.Fleet == nil {
		return ErrNoFleet
	}
	c, err := fleet.New(*cfg.Fleet, fleet.Options{Log: hclog.NewNullLogger()})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoFleet, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	return status.EtcdErr(op(ctx, c))
}

// Pause stops every host of env's fleet following the branch.
func Pause(ctx context.Context, cfg *agentconfig.Config, env, by, reason string) error {
	return do(ctx, cfg, func(ctx context.Context, c *fleet.Client) error {
		return c.Pause(ctx, env, fleet.PauseInfo{By: by, Reason: reason})
	})
}

// Resume ends env's fleet-wide pause or rollback.
func Resume(ctx context.Context, cfg *agentconfig.Config, env string) error {
	return do(ctx, cfg, func(ctx context.Context, c *fleet.Client) error { return c.Resume(ctx, env) })
}

// Retry clears env's halts and failed or interrupted migrations
// fleet-wide.
func Retry(ctx context.Context, cfg *agentconfig.Config, env, by string) error {
	return do(ctx, cfg, func(ctx context.Context, c *fleet.Client) error {
		_, err := c.Retry(ctx, env, fleet.PauseInfo{By: by})
		return err
	})
}

// Rollback has every host of env's fleet deploy target through the waves
// and halts the branch head fleet-wide (until a new commit or a
// fleet-wide resume); it returns the head it halted.
func Rollback(ctx context.Context, cfg *agentconfig.Config, env, target, by, reason string) (string, error) {
	if cfg.Fleet == nil {
		return "", ErrNoFleet
	}
	dir, err := os.MkdirTemp("", "berth-rollback-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	src, err := daemon.NewSource(cfg, dir, hclog.NewNullLogger())
	if err != nil {
		return "", err
	}
	lctx, cancel := context.WithTimeout(ctx, Timeout)
	head, err := src.Head(lctx)
	cancel()
	switch {
	case err != nil:
		return "", fmt.Errorf("the branch head (which the rollback holds back): %w", err)
	case head == target:
		return "", fmt.Errorf("%.12s is the branch head already", target)
	}
	return head, do(ctx, cfg, func(ctx context.Context, c *fleet.Client) error {
		return c.Rollback(ctx, env, fleet.RollbackInfo{Commit: target, Head: head, By: by, Reason: reason})
	})
}

// Status is `berth fleet status`: every host of each env named, with the
// fleet-wide controls, halts and migrations.
func Status(ctx context.Context, cfg *agentconfig.Config, names []string) (out []status.FleetEnv, err error) {
	err = do(ctx, cfg, func(ctx context.Context, c *fleet.Client) error {
		out, err = status.Fleet(ctx, c, names)
		return err
	})
	return out, err
}

// JobHistory is the fleet's records of env's job, newest first (at most
// n), each naming its host: the same on every host.
func JobHistory(ctx context.Context, cfg *agentconfig.Config, env, job string, n int) (runs []fleet.JobRecord, err error) {
	err = do(ctx, cfg, func(ctx context.Context, c *fleet.Client) error {
		runs, err = c.JobRuns(ctx, env, job, n)
		return err
	})
	return runs, err
}
