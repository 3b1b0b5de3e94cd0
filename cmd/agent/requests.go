package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/operator"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/statedir"
	"berth.dev/berth/status"
)

// berth pause, resume and retry (and rollback, rollback.go): a request
// left for this host's agent (statedir.Submit), or with --fleet a change
// made fleet-wide in etcd (package operator).

// request parses a request command's flags: --env, --format and the
// command's own (extra); ok false stops it with code.
func request(name, usage string, args []string, stdout, stderr io.Writer, extra func(fs *flag.FlagSet)) (cfg *agentconfig.Config, env string, out answer, code int, ok bool) {
	fs := cliflags.New(name, usage, stderr)
	only := fs.String("env", "", "the environment (needed when the agent runs several)")
	format := cliflags.AddFormat(fs)
	if extra != nil {
		extra(fs)
	}
	if cfg, code, ok = withConfig(fs, args, stderr); !ok {
		return nil, "", answer{}, code, false
	}
	if env, err := status.OneEnv(cfg, *only); err != nil {
		return nil, "", answer{}, cliflags.UsageError(fs, "%v", err), false
	} else {
		return cfg, env, answer{stdout, format.JSON()}, exitOK, true
	}
}

// runPause is `berth pause [--fleet] [--reason TEXT]`: stop following the
// branch, keeping the live revision and self-heal, until berth resume.
func runPause(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var all *bool
	var reason *string
	cfg, env, out, code, ok := request("pause", "[--config FILE] [--env ENV] [--fleet] [--reason TEXT] [--format text|json]", args, stdout, stderr, func(fs *flag.FlagSet) {
		all = fs.Bool("fleet", false, "pause every host of the env's fleet")
		reason = fs.String("reason", "", "why (shown in status)")
	})
	if !ok {
		return code
	}
	by := operator.Who()
	if *all {
		return fleetDone(out, stderr, env, "pause", operator.Pause(ctx, cfg, env, by, *reason),
			fmt.Sprintf("env %s paused fleet-wide by %s: no host follows the branch until berth resume --fleet; live revisions keep being served and self-healed", env, by))
	}
	return submit(cfg, env, reconcile.Request{Action: "pause", By: by, Reason: *reason}, out, stderr,
		fmt.Sprintf("pause requested by %s: the branch is not followed until berth resume; the live revision keeps being served and self-healed", by))
}

// runResume is `berth resume [--fleet]`: follow the branch again after a
// pause or a rollback (fleet-wide: the fleet's pause and rollback).
func runResume(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var all *bool
	cfg, env, out, code, ok := request("resume", "[--config FILE] [--env ENV] [--fleet] [--format text|json]", args, stdout, stderr, func(fs *flag.FlagSet) {
		all = fs.Bool("fleet", false, "end the fleet-wide pause or rollback")
	})
	if !ok {
		return code
	}
	if *all {
		return fleetDone(out, stderr, env, "resume", operator.Resume(ctx, cfg, env), fmt.Sprintf("env %s resumed fleet-wide: every host follows the branch again", env))
	}
	return submit(cfg, env, reconcile.Request{Action: "resume"}, out, stderr, "resume requested: the agent follows the branch again")
}

// runRetry is `berth retry`: this host forgets its failed revision; with a
// fleet, every halt and failed or interrupted migration of the env is
// cleared fleet-wide too.
func runRetry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, env, out, code, ok := request("retry", "[--config FILE] [--env ENV] [--format text|json]", args, stdout, stderr, nil)
	if !ok {
		return code
	}
	if cfg.Fleet != nil {
		err := operator.Retry(ctx, cfg, env, operator.Who())
		if code := fleetDone(out, stderr, env, "retry", err, fmt.Sprintf("env %s: halts and failed or interrupted migrations cleared fleet-wide", env)); code != exitOK {
			return code
		}
	}
	return submit(cfg, env, reconcile.Request{Action: "retry"}, out, stderr, "retry of the failed revision requested")
}

// fleetDone reports a fleet-wide change: done, or why not (a config
// without a fleet block is a configuration error).
func fleetDone(out answer, stderr io.Writer, env, cmd string, err error, done string) int {
	switch {
	case errors.Is(err, operator.ErrNoFleet):
		return failed(stderr, cmd+" --fleet", err, exitConfig)
	case err != nil:
		return failed(stderr, cmd+" --fleet", err, exitFailure)
	}
	out.say(requestJSON{Env: env, Action: cmd, Fleet: true, Message: done})
	return exitOK
}

// submit leaves the request for env's agent and signals it to check now.
func submit(cfg *agentconfig.Config, env string, r reconcile.Request, out answer, stderr io.Writer, done string) int {
	signalled, err := statedir.Submit(cfg.StateDir, cfg.EnvDir(env), r)
	if err != nil {
		return failed(stderr, r.Action, err, exitFailure)
	}
	a := requestJSON{Env: env, Action: r.Action, Commit: r.Commit, Agent: "signalled", Message: done + "; the agent is applying it now"}
	if !signalled {
		a.Agent, a.Message = "not running", done+"; the agent is not running: it applies it when it starts"
	}
	out.say(a)
	return exitOK
}
