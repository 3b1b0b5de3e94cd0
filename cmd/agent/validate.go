package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/envs"
)

type validateResult struct {
	Env      string        `json:"env"`
	OK       bool          `json:"ok"`
	Services int           `json:"services,omitempty"`
	Jobs     int           `json:"jobs,omitempty"`
	Problems envs.Problems `json:"problems,omitempty"`
	Error    string        `json:"error,omitempty"`
	// Sealed says what the env's SOPS-encrypted files hold, read without
	// the host's key: which keys are encrypted, and for whom.
	Sealed []sealedResult `json:"sealed,omitempty"`
}

type sealedResult struct {
	File       string   `json:"file"`
	Recipients []string `json:"recipients"`
	Encrypted  []string `json:"encrypted"`
	Plain      []string `json:"plain,omitempty"`
}

func sealedResults(e *envs.Env) []sealedResult {
	var out []sealedResult
	for _, path := range slices.Sorted(maps.Keys(e.Sealed)) {
		f := e.Sealed[path]
		r := sealedResult{File: path, Recipients: f.Recipients()}
		for _, k := range f.Keys() {
			if k.Encrypted {
				r.Encrypted = append(r.Encrypted, k.Name)
			} else {
				r.Plain = append(r.Plain, k.Name)
			}
		}
		out = append(out, r)
	}
	return out
}

// runValidate checks environments of a config repo checkout: the same
// loading and validation the agent does before a deploy, for the config
// repo's own CI.
func runValidate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", "[--env ENV] [--format text|json] [--policy AGENT_YAML] [DIR]", stderr)
	env := fs.String("env", "", "validate only this environment (default: every envs/* directory)")
	format := addFormat(fs)
	policyFile := fs.String("policy", "", "an agent.yaml whose policy:, vault.allowed_paths and nginx.conf_dir apply, as on the host")
	if code, ok := parseArgs(fs, args, 0, 1, ""); !ok {
		return code
	}
	opts := envs.Options{}
	if *policyFile != "" {
		var err error
		if opts, err = agentconfig.ReadPolicy(*policyFile); err != nil {
			fmt.Fprintf(stderr, "berth validate: %v\n", err)
			return exitConfig
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
			fmt.Fprintf(stderr, "berth validate: %v\n", err)
			return exitFailure
		}
		if len(names) == 0 {
			fmt.Fprintf(stderr, "berth validate: no environments under %s/envs\n", dir)
			return exitFailure
		}
	}
	var results []validateResult
	failed := false
	for _, name := range names {
		r := validateResult{Env: name}
		e, err := envs.Load(ctx, dir, name, opts)
		var ps envs.Problems
		switch {
		case errors.As(err, &ps):
			r.Problems = ps
		case err != nil:
			r.Error = err.Error()
		default:
			r.OK, r.Services, r.Jobs, r.Sealed = true, len(e.Services), len(e.Jobs), sealedResults(e)
		}
		failed = failed || !r.OK
		results = append(results, r)
	}
	if format.json() {
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
