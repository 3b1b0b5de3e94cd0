package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"berth.dev/berth/daemon"
	"berth.dev/berth/engine"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
	"github.com/hashicorp/go-hclog"
)

// runPlan prints what a deploy of the current head would do, changing
// nothing: it fetches into a scratch dir, not the agent's state dir, and
// plans with the agent's own code (reconcile.Deployer.Plan), secret digests
// included. Vault is asked only for services that have secrets.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if wantsPreview(args) {
		return runPlanPreview(ctx, args, stdout, stderr)
	}
	fs := newFlagSet("plan", "[--config FILE] [--env ENV]", stderr)
	only := fs.String("env", "", "only this environment (default: every env the agent runs)")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return code
	}
	names, err := status.SelectEnvs(cfg, *only)
	if err != nil {
		return fail(exitUsage, err)
	}
	log := newLogger(stderr, hclog.Warn)
	scratch, err := os.MkdirTemp("", "berth-plan-")
	if err != nil {
		return fail(exitFailure, err)
	}
	defer os.RemoveAll(scratch)
	src, err := daemon.NewSource(cfg, scratch, log)
	if err != nil {
		return fail(exitConfig, err)
	}
	head, err := src.Head(ctx)
	if err != nil {
		return fail(exitFailure, err)
	}
	rev, err := daemon.Source{Source: src}.Fetch(ctx, head, "")
	if err != nil {
		return fail(exitFailure, err)
	}
	dc, err := daemon.NewDocker(cfg)
	if err != nil {
		return fail(exitFailure, err)
	}
	defer dc.Close()
	sec, _, err := daemon.NewSecrets(cfg, log) // contacts nothing until a service resolves its secrets
	if err != nil {
		return fail(exitConfig, err)
	}
	eng := engine.New(dc, log)
	for i, name := range names {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		env, err := daemon.Loader(cfg, name, eng)(ctx, rev)
		if err != nil {
			return fail(exitFailure, fmt.Errorf("env %s: %w", name, err))
		}
		d := daemon.NewDeployer(cfg, name, eng, sec, log)
		res, err := d.Plan(ctx, reconcile.Input{Env: env, Revision: head})
		if err != nil {
			return fail(exitFailure, fmt.Errorf("env %s: %w", name, err))
		}
		fmt.Fprintf(stdout, "env %s at %.12s (%s)\n", name, head, rev.Subject)
		for _, a := range res.Actions {
			fmt.Fprintf(stdout, "  %s\n", a)
		}
		if !res.Changed {
			fmt.Fprintln(stdout, "no change")
		}
		if st, err := reconcile.LoadState(cfg.EnvDir(name)); err == nil {
			switch {
			case st.Hold != nil:
				fmt.Fprintf(stdout, "note: the agent holds %.12s (berth rollback) until %s\n", st.Hold.Commit, holdEnd(cfg))
			case st.Failed != nil && st.Failed.Commit == head:
				fmt.Fprintf(stdout, "note: %.12s failed on this host; the agent keeps the live revision until a new commit or berth retry\n", head)
			}
		}
	}
	return exitOK
}
