package main

import (
	"context"
	"fmt"
	"io"

	"berth.dev/berth/daemon"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/operator"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// runRollback asks the agent to go back to a revision this host ran
// successfully (default: the one before the live one) and hold there.
func runRollback(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("rollback", "[--config FILE] [--env ENV] [--fleet [--reason TEXT]] [--format text|json] [REV]", stderr)
	only := fs.String("env", "", "the environment (needed when the agent runs several)")
	all := fs.Bool("fleet", false, "roll every host of the env's fleet back (through the waves), and halt the branch head fleet-wide")
	reason := fs.String("reason", "", "why (with --fleet; shown in berth fleet status)")
	format := cliflags.AddFormat(fs)
	cfg, code, ok := withConfigArgs(fs, args, 0, 1, "", stderr)
	if !ok {
		return code
	}
	env, err := status.OneEnv(cfg, *only)
	if err != nil {
		return cliflags.UsageError(fs, "%v", err)
	}
	out := answer{stdout, format.JSON()}
	st, err := reconcile.LoadState(cfg.EnvDir(env))
	if err != nil {
		return failed(stderr, "rollback", err, exitFailure)
	}
	recs, err := cfg.Journal(env).List()
	if err != nil {
		return failed(stderr, "rollback", err, exitFailure)
	}
	live := ""
	if st.Live != nil {
		live = st.Live.Commit
	}
	want := fs.Arg(0)
	target := reconcile.RollbackTarget(recs, live, want)
	if target == "" {
		if want == "" {
			fmt.Fprintln(stderr, "berth rollback: no earlier successful deploy recorded on this host")
		} else {
			fmt.Fprintf(stderr, "berth rollback: no successful deploy of %s recorded on this host (see berth history)\n", want)
		}
		return exitFailure
	}
	if *all {
		by := operator.Who()
		head, err := operator.Rollback(ctx, cfg, env, target, by, *reason)
		return fleetDone(out, stderr, env, "rollback", err, fmt.Sprintf("env %s: fleet-wide rollback to %.12s requested by %s; head %.12s halted; every host deploys %.12s through the waves until a new commit or berth resume --fleet",
			env, target, by, head, target))
	}
	return submit(cfg, env, reconcile.Request{Action: "rollback", Commit: target}, out, stderr,
		fmt.Sprintf("rollback to %.12s requested; held there until %s", target, daemon.HoldEnd(cfg)))
}

// answer is what an operator's request prints: a sentence, or with
// --format json one object per change made.
type answer struct {
	w    io.Writer
	json bool
}

func (a answer) say(v requestJSON) {
	if a.json {
		writeJSON(a.w, v)
		return
	}
	fmt.Fprintln(a.w, v.Message)
}

// requestJSON is one change an operator's request made
// (docs/reference.md).
type requestJSON struct {
	Env    string `json:"env"`
	Action string `json:"action"`
	Commit string `json:"commit,omitempty"`
	// Fleet: the change was made fleet-wide, in etcd.
	Fleet bool `json:"fleet,omitempty"`
	// Agent is this host's agent: "signalled" (applying it now) or "not
	// running" (applies it when it starts); empty for a fleet-wide change.
	Agent   string `json:"agent,omitempty"`
	Message string `json:"message"`
}
