package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/statedir"
)

// runRollback asks the agent to go back to a revision this host ran
// successfully (default: the one before the live one) and hold there.
func runRollback(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("rollback", "[--config FILE] [--env ENV] [--fleet [--reason TEXT]] [REV]", stderr)
	only := fs.String("env", "", "the environment (needed when the agent runs several)")
	all := fs.Bool("fleet", false, "roll every host of the env's fleet back (through the waves), and halt the branch head fleet-wide")
	reason := fs.String("reason", "", "why (with --fleet; shown in berth fleet status)")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return exitUsage
	}
	env, err := oneEnv(cfg, *only)
	if err != nil {
		fmt.Fprintf(stderr, "berth rollback: %v\n", err)
		return exitUsage
	}
	st, err := reconcile.LoadState(cfg.EnvDir(env))
	if err != nil {
		fmt.Fprintf(stderr, "berth rollback: %v\n", err)
		return exitFailure
	}
	recs, err := cfg.Journal(env).List()
	if err != nil {
		fmt.Fprintf(stderr, "berth rollback: %v\n", err)
		return exitFailure
	}
	live := ""
	if st.Live != nil {
		live = st.Live.Commit
	}
	want := fs.Arg(0)
	target := ""
	for _, r := range recs {
		if r.Result != reconcile.ResultSucceeded {
			continue
		}
		if want == "" && r.Commit != live || want != "" && strings.HasPrefix(r.Commit, want) {
			target = r.Commit
			break
		}
	}
	if target == "" {
		if want == "" {
			fmt.Fprintln(stderr, "berth rollback: no earlier successful deploy recorded on this host")
		} else {
			fmt.Fprintf(stderr, "berth rollback: no successful deploy of %s recorded on this host (see berth history)\n", want)
		}
		return exitFailure
	}
	if *all {
		return rollbackFleet(ctx, cfg, env, target, *reason, stdout, stderr)
	}
	return submit(cfg, env, reconcile.Request{Action: "rollback", Commit: target}, stdout, stderr,
		fmt.Sprintf("rollback to %.12s requested; held there until %s", target, holdEnd(cfg)))
}

func holdEnd(cfg *agentconfig.Config) string {
	if cfg.RollbackHold == "resume" {
		return "berth resume"
	}
	return "a new commit or berth resume"
}

// submit leaves the request for env's agent and signals it to check now.
func submit(cfg *agentconfig.Config, env string, r reconcile.Request, stdout, stderr io.Writer, done string) int {
	r.At = time.Now().UTC()
	dir := cfg.EnvDir(env)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "berth %s: %v\n", r.Action, err)
		return exitFailure
	}
	if err := reconcile.SubmitRequest(dir, r); err != nil {
		fmt.Fprintf(stderr, "berth %s: %v\n", r.Action, err)
		return exitFailure
	}
	if statedir.Signal(cfg.StateDir) {
		fmt.Fprintf(stdout, "%s; the agent is applying it now\n", done)
	} else {
		fmt.Fprintf(stdout, "%s; the agent is not running: it applies it when it starts\n", done)
	}
	return exitOK
}
