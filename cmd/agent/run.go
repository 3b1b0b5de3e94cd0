package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/daemon"
	"berth.dev/berth/internal/buildinfo"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/reconcile"
)

// runRun is the daemon: poll the config repo and reconcile this host until
// SIGTERM (package daemon). An in-flight deploy is rolled back on shutdown
// and the revision retried on the next start.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("run", "[--config FILE] [--once] [--check-config] [--log-level LEVEL]", stderr)
	once := fs.Bool("once", false, "make one pass of each env and exit: 0 live, 1 verdict, 4 outage (docs/operations.md)")
	checkOnly := fs.Bool("check-config", false, "validate the config and exit")
	level := logLevel{hclog.Info}
	fs.Var(&level, "log-level", "trace, debug, info, warn or error")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%s: ok\n", fs.Lookup("config").Value)
		return exitOK
	}
	tuneGC()
	d := &daemon.Daemon{Config: cfg, Log: newLogger(stderr, level.Level), Version: buildinfo.Get().Version, Commit: buildinfo.Get().Commit}
	if *once {
		passes, err := d.Once(ctx)
		if err != nil {
			return startFailed(d, err)
		}
		return onceExit(passes)
	}
	if err := d.Run(ctx); err != nil {
		return startFailed(d, err)
	}
	return exitOK
}

// startFailed logs why the daemon did not start: a config problem found
// only when a client is made exits like a bad config.
func startFailed(d *daemon.Daemon, err error) int {
	d.Log.Error("berth did not start", "error", err)
	if errors.Is(err, daemon.ErrConfig) {
		return exitConfig
	}
	return exitFailure
}

// onceExit is the exit code of `berth run --once`: a verdict on any env
// (this pass's, or an earlier one that holds the head back) outranks an
// outage, which outranks success (docs/operations.md).
func onceExit(passes []reconcile.Pass) int {
	code := exitOK
	for _, p := range passes {
		switch {
		case p.Result == reconcile.ResultFailed, p.Result == reconcile.ResultHeld, p.HeadRefused:
			return exitFailure
		case p.Result == reconcile.ResultOutage, p.Result == reconcile.ResultInterrupted:
			code = exitOutage
		}
	}
	return code
}

// tuneGC collects when the heap grows by half of what is live rather than
// doubles (GOGC=50), unless GOGC is set: an idle agent's heap is a few MB
// that barely changes, so the extra collections cost little CPU, and its
// resident memory is what an operator sees of berth (docs/benchmarks.md,
// idle daemon).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
