package main

import (
	"context"
	"io"
	"slices"
	"strings"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/preview"
)

// wantsPreview says whether berth plan was asked for a plan of two
// revisions of a checkout (--repo) rather than of the agent's head.
func wantsPreview(args []string) bool {
	return slices.ContainsFunc(args, func(a string) bool {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		return strings.HasPrefix(a, "-") && name == "repo"
	})
}

// runPlanPreview is berth plan --repo DIR --from REF --to REF: what a
// change of the config repo will do, per env, with no host, Docker or
// Vault (a CI runner). Exit 1 when an env at --to fails validation or
// policy, as berth validate would.
func runPlanPreview(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const usage = "--repo DIR [--path P] --from REF [--to REF] [--env ENV …] [--format text|markdown|json] [--hosts N] [--policy AGENT_YAML]"
	fs := cliflags.New("plan", usage, stderr)
	repo := fs.String("repo", "", "a Git checkout of the config repository (required)")
	path := fs.String("path", "", "the directory inside the repository holding envs/, as the agent's repo.path (default: its root)")
	from := fs.String("from", "", "the revision the hosts run now, e.g. origin/main (required)")
	to := fs.String("to", "HEAD", "the revision to plan, e.g. the PR's head")
	var only cliflags.List
	fs.Var(&only, "env", "only this environment (repeatable; default: every env the change touches)")
	format := fs.String("format", "text", "output format: text, markdown (a PR comment) or json")
	hosts := fs.Int("hosts", 0, "the fleet's size, to show the rollout's waves")
	policyFile := fs.String("policy", "", "an agent.yaml whose policy applies, as on the host (as berth validate --policy)")
	if code, ok := cliflags.Parse(fs, args); !ok {
		return code
	}
	bad := func(msg string) int { return cliflags.UsageError(fs, "%s", msg) }
	switch {
	case fs.NArg() > 0:
		return bad("unexpected argument " + fs.Arg(0))
	case *repo == "" || *from == "":
		return bad("--repo and --from are required")
	case !slices.Contains([]string{"text", "markdown", "json"}, *format):
		return bad("--format must be text, markdown or json")
	case *hosts < 0:
		return bad("--hosts must not be negative")
	}
	o := preview.Options{Envs: only, Hosts: *hosts, Path: *path}
	if *policyFile != "" {
		var err error
		if o.Load, err = agentconfig.ReadPolicy(*policyFile); err != nil {
			return failed(stderr, "plan", err, exitConfig)
		}
	}
	rep, err := preview.Compute(ctx, *repo, *from, *to, o)
	if err != nil {
		return failed(stderr, "plan", err, exitFailure)
	}
	switch *format {
	case "markdown":
		err = rep.Markdown(stdout)
	case "json":
		err = rep.JSON(stdout)
	default:
		err = rep.Text(stdout)
	}
	if err != nil {
		return failed(stderr, "plan", err, exitFailure)
	}
	if rep.Failed() {
		return exitFailure
	}
	return exitOK
}
