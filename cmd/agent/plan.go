package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/daemon"
	"berth.dev/berth/internal/cliflags"
)

// runPlan prints what a deploy of the current head would do, changing
// nothing: it fetches into a scratch dir, not the agent's state dir, and
// plans with the agent's own code (reconcile.Deployer.Plan), secret digests
// included. Vault is asked only for services that have secrets.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if wantsPreview(args) {
		return runPlanPreview(ctx, args, stdout, stderr)
	}
	fs := cliflags.New("plan", "[--config FILE] [--env ENV] [--format text|json]", stderr)
	format := cliflags.AddFormat(fs)
	cfg, names, code, ok := withEnvs(fs, args, stderr)
	if !ok {
		return code
	}
	plans, err := daemon.Plan(ctx, cfg, names, newLogger(stderr, hclog.Warn))
	switch {
	case errors.Is(err, daemon.ErrConfig):
		return failed(stderr, "plan", err, exitConfig)
	case err != nil:
		return failed(stderr, "plan", err, exitFailure)
	}
	if format.JSON() {
		return writeJSON(stdout, plans)
	}
	for i, p := range plans {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "env %s at %.12s (%s)\n", p.Env, p.Commit, p.Subject)
		for _, a := range p.Actions {
			fmt.Fprintf(stdout, "  %s\n", a)
		}
		if !p.Changed {
			fmt.Fprintln(stdout, "no change")
		}
		if p.Note != "" {
			fmt.Fprintf(stdout, "note: %s\n", p.Note)
		}
	}
	return exitOK
}
