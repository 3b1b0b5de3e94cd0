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
	fs := newFlagSet("plan", "[--config FILE] [--env ENV] [--format text|json]", stderr)
	only := fs.String("env", "", "only this environment (default: every env the agent runs)")
	format := addFormat(fs)
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
		return usageError(fs, "%v", err)
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
	var plans []planJSON
	for _, name := range names {
		env, err := daemon.Loader(cfg, name, eng)(ctx, rev)
		if err != nil {
			return fail(exitFailure, fmt.Errorf("env %s: %w", name, err))
		}
		d := daemon.NewDeployer(cfg, name, eng, sec, log)
		res, err := d.Plan(ctx, reconcile.Input{Env: env, Revision: head})
		if err != nil {
			return fail(exitFailure, fmt.Errorf("env %s: %w", name, err))
		}
		p := planJSON{Env: name, Commit: head, Subject: rev.Subject, Changed: res.Changed, Actions: []string{}}
		for _, a := range res.Actions {
			p.Actions = append(p.Actions, a.String())
		}
		if st, err := reconcile.LoadState(cfg.EnvDir(name)); err == nil {
			switch {
			case st.Hold != nil:
				p.Note = fmt.Sprintf("the agent holds %.12s (berth rollback) until %s", st.Hold.Commit, holdEnd(cfg))
			case st.Failed != nil && st.Failed.Commit == head:
				p.Note = fmt.Sprintf("%.12s failed on this host; the agent keeps the live revision until a new commit or berth retry", head)
			}
		}
		plans = append(plans, p)
	}
	if format.json() {
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

// planJSON is one env of `berth plan --format json` (docs/reference.md).
type planJSON struct {
	Env     string   `json:"env"`
	Commit  string   `json:"commit"`
	Subject string   `json:"subject,omitempty"`
	Changed bool     `json:"changed"`
	Actions []string `json:"actions"`
	Note    string   `json:"note,omitempty"`
}
