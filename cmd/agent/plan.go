package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"berth.dev/berth/engine"
	"berth.dev/berth/reconcile"
)

// runPlan prints what a deploy of the current head would do, changing
// nothing: it fetches into a scratch dir, not the agent's state dir.
func runPlan(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("plan", "[--config FILE]", stderr)
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	log := newLogger(stderr, "warn")
	scratch, err := os.MkdirTemp("", "berth-plan-")
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitFailure
	}
	defer os.RemoveAll(scratch)
	src, err := newSource(cfg, scratch, log)
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitConfig
	}
	head, err := src.Head(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitFailure
	}
	rev, err := source{src}.Fetch(ctx, head, "")
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitFailure
	}
	env, err := loader(cfg)(ctx, rev)
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitFailure
	}
	dc, err := newDocker(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitFailure
	}
	defer dc.Close()
	actual, err := engine.New(dc, log).List(ctx, cfg.Env)
	if err != nil {
		fmt.Fprintf(stderr, "berth plan: %v\n", err)
		return exitFailure
	}
	hashes := map[string]string{}
	for _, s := range env.Services {
		hashes[s.Name] = s.Hash
	}
	actions := reconcile.Plan(env, hashes, actual)
	fmt.Fprintf(stdout, "env %s at %.12s (%s)\n", cfg.Env, head, rev.Subject)
	for _, a := range actions {
		fmt.Fprintf(stdout, "  %s\n", a)
	}
	if !reconcile.Changes(actions) {
		fmt.Fprintln(stdout, "no change")
	}
	return exitOK
}
