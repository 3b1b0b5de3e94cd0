package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/cliflags"
)

// runValidate checks environments of a config repo checkout: the same
// loading and validation the agent does before a deploy, for the config
// repo's own CI.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("validate", "[--env ENV] [--format text|json] [--policy AGENT_YAML] [DIR]", stderr)
	env := fs.String("env", "", "validate only this environment (default: every envs/* directory)")
	format := cliflags.AddFormat(fs)
	policyFile := fs.String("policy", "", "an agent.yaml whose policy:, vault.allowed_paths and nginx.conf_dir apply, as on the host")
	if code, ok := cliflags.ParseArgs(fs, args, 0, 1, ""); !ok {
		return code
	}
	opts := envs.Options{}
	if *policyFile != "" {
		var err error
		if opts, err = agentconfig.ReadPolicy(*policyFile); err != nil {
			return failed(stderr, "validate", err, exitConfig)
		}
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	names := []string{*env}
	if *env == "" {
		var err error
		if names, err = envs.List(dir); err != nil {
			return failed(stderr, "validate", err, exitFailure)
		}
		if len(names) == 0 {
			fmt.Fprintf(stderr, "berth validate: no environments under %s/envs\n", dir)
			return exitFailure
		}
	}
	results := envs.ValidateAll(ctx, dir, names, opts)
	failed := slices.ContainsFunc(results, func(r envs.Validation) bool { return !r.OK })
	if format.JSON() {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(results)
	} else {
		for _, r := range results {
			switch {
			case r.OK:
				fmt.Fprintf(stdout, "envs/%s: ok (%s, %s)\n", r.Env, plural(r.Services, "service"), plural(r.Jobs, "job"))
				for _, f := range r.Sealed {
					fmt.Fprintf(stdout, "  %s: SOPS, for %s; encrypted: %s", f.File, plural(len(f.Recipients), "age recipient"), strings.Join(f.Encrypted, ", "))
					if len(f.Plain) > 0 {
						fmt.Fprintf(stdout, "; in the clear: %s", strings.Join(f.Plain, ", "))
					}
					fmt.Fprintln(stdout)
				}
			case r.Error != "":
				// One line, whatever the error quotes (envs.Problem is one line too).
				fmt.Fprintf(stdout, "envs/%s: %s\n", r.Env, lineBreaks.Replace(r.Error))
			default:
				for _, p := range r.Problems {
					fmt.Fprintln(stdout, p.String())
				}
			}
		}
	}
	if failed {
		return exitFailure
	}
	return exitOK
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

var lineBreaks = strings.NewReplacer("\n", `\n`, "\r", `\r`)
