package main

import (
	"flag"
	"fmt"
	"io"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/internal/cliflags"
	"berth.dev/berth/status"
)

// Each command owns its flags, its number of arguments and its output
// format: what it is given wrongly stops it with the reason, then its
// usage, and exit 2.

// failed stops a command that ran and failed: "berth CMD: err", exit code.
func failed(stderr io.Writer, cmd string, err error, code int) int {
	fmt.Fprintf(stderr, "berth %s: %v\n", cmd, err)
	return code
}

// withConfig adds --config to fs, parses args (no positional argument)
// and loads the agent config. When ok is false the command stops with
// code (help, bad flags, bad config); fs's own flags must be defined
// before the call.
func withConfig(fs *flag.FlagSet, args []string, stderr io.Writer) (cfg *agentconfig.Config, code int, ok bool) {
	return withConfigArgs(fs, args, 0, 0, "", stderr)
}

// withEnvs is withConfig for a command that reads every env the agent
// runs, or the one --env names.
func withEnvs(fs *flag.FlagSet, args []string, stderr io.Writer) (cfg *agentconfig.Config, names []string, code int, ok bool) {
	only := fs.String("env", "", "only this environment (default: every env the agent runs)")
	if cfg, code, ok = withConfig(fs, args, stderr); !ok {
		return nil, nil, code, false
	}
	names, err := status.SelectEnvs(cfg, *only)
	if err != nil {
		return nil, nil, cliflags.UsageError(fs, "%v", err), false
	}
	return cfg, names, 0, true
}

// withConfigArgs is withConfig for a command that takes between min and
// max positional arguments.
func withConfigArgs(fs *flag.FlagSet, args []string, min, max int, what string, stderr io.Writer) (cfg *agentconfig.Config, code int, ok bool) {
	path := fs.String("config", agentconfig.DefaultPath, "agent config file")
	if code, ok := cliflags.ParseArgs(fs, args, min, max, what); !ok {
		return nil, code, false
	}
	cfg, err := agentconfig.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return nil, exitConfig, false
	}
	return cfg, 0, true
}
