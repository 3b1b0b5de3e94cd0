package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/engine"
	"berth.dev/berth/reconcile"
)

// EnvPlan is one env of `berth plan` (docs/reference.md: its JSON).
type EnvPlan struct {
	Env     string   `json:"env"`
	Commit  string   `json:"commit"`
	Subject string   `json:"subject,omitempty"`
	Changed bool     `json:"changed"`
	Actions []string `json:"actions"`
	// Note says what keeps the agent from deploying the head (a rollback
	// hold, a verdict on it).
	Note string `json:"note,omitempty"`
}

// Plan is what a deploy of the branch head would do to each env named,
// changing nothing: it fetches into a scratch dir, not the agent's state
// dir, and plans with the agent's own code (reconcile.Deployer.Plan),
// secret digests included; Vault is asked only for services that have
// secrets. ErrConfig marks a setting found wrong when its client is made.
func Plan(ctx context.Context, cfg *agentconfig.Config, names []string, log hclog.Logger) ([]EnvPlan, error) {
	scratch, err := os.MkdirTemp("", "berth-plan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	src, err := NewSource(cfg, scratch, log)
	if err != nil {
		return nil, fmt.Errorf("%w: config repo: %w", ErrConfig, err)
	}
	head, err := src.Head(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := Source{Source: src}.Fetch(ctx, head, "")
	if err != nil {
		return nil, err
	}
	dc, err := NewDocker(cfg)
	if err != nil {
		return nil, err
	}
	defer dc.Close()
	sec, _, err := NewSecrets(cfg, log) // contacts nothing until a service resolves its secrets
	if err != nil {
		return nil, fmt.Errorf("%w: vault: %w", ErrConfig, err)
	}
	eng := engine.New(dc, log)
	var plans []EnvPlan
	for _, name := range names {
		env, err := Loader(cfg, name, eng)(ctx, rev)
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", name, err)
		}
		res, err := NewDeployer(cfg, name, eng, sec, log).Plan(ctx, reconcile.Input{Env: env, Revision: head})
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", name, err)
		}
		p := EnvPlan{Env: name, Commit: head, Subject: rev.Subject, Changed: res.Changed, Actions: []string{}}
		for _, a := range res.Actions {
			p.Actions = append(p.Actions, a.String())
		}
		if st, err := reconcile.LoadState(cfg.EnvDir(name)); err == nil {
			switch {
			case st.Hold != nil:
				p.Note = fmt.Sprintf("the agent holds %.12s (berth rollback) until %s", st.Hold.Commit, HoldEnd(cfg))
			case st.Failed != nil && st.Failed.Commit == head:
				p.Note = fmt.Sprintf("%.12s failed on this host; the agent keeps the live revision until a new commit or berth retry", head)
			}
		}
		plans = append(plans, p)
	}
	return plans, nil
}

// HoldEnd says what ends a `berth rollback` hold on this host.
func HoldEnd(cfg *agentconfig.Config) string {
	if cfg.RollbackHold == "resume" {
		return "berth resume"
	}
	return "a new commit or berth resume"
}
