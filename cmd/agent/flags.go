package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/status"
)

// Each command owns its flags, its number of arguments and its output
// format: what it is given wrongly stops it with the reason, then its
// usage, and exit 2.

// newFlagSet returns a command's flag set: errors and usage go to stderr.
func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("berth "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: berth %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// failed stops a command that ran and failed: "berth CMD: err", exit code.
func failed(stderr io.Writer, cmd string, err error, code int) int {
	fmt.Fprintf(stderr, "berth %s: %v\n", cmd, err)
	return code
}

// usageError stops a command called wrongly: the reason, then the usage.
func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return exitUsage
}

// parseFlags parses args, returning the exit code to stop with when the
// command must not go on (help asked for, or bad flags: the flag package
// says which, then prints the usage). Flags may come after positional
// arguments ("berth jobs logs NAME --config FILE").
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK, false
			}
			return exitUsage, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is positional
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	fs.Parse(append([]string{"--"}, pos...))
	return 0, true
}

// parseArgs is parseFlags wanting between min and max positional
// arguments; what names the missing ones ("NAME").
func parseArgs(fs *flag.FlagSet, args []string, min, max int, what string) (int, bool) {
	if code, ok := parseFlags(fs, args); !ok {
		return code, false
	}
	switch n := fs.NArg(); {
	case n < min:
		return usageError(fs, "missing %s", what), false
	case n > max:
		return usageError(fs, "unexpected argument %q", fs.Arg(max)), false
	}
	return 0, true
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
		return nil, nil, usageError(fs, "%v", err), false
	}
	return cfg, names, 0, true
}

// withConfigArgs is withConfig for a command that takes between min and
// max positional arguments.
func withConfigArgs(fs *flag.FlagSet, args []string, min, max int, what string, stderr io.Writer) (cfg *agentconfig.Config, code int, ok bool) {
	path := fs.String("config", agentconfig.DefaultPath, "agent config file")
	if code, ok := parseArgs(fs, args, min, max, what); !ok {
		return nil, code, false
	}
	cfg, err := agentconfig.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return nil, exitConfig, false
	}
	return cfg, 0, true
}

// outputFormat is a command's --format: text (default) or json, with
// --json kept as an alias of --format json.
type outputFormat string

func (f *outputFormat) String() string { return string(*f) }

func (f *outputFormat) Set(s string) error {
	switch s {
	case "text", "json":
		*f = outputFormat(s)
	case "table": // berth fleet status's older name for text
		*f = "text"
	default:
		return errors.New("text or json")
	}
	return nil
}

// addFormat adds --format and --json to fs.
func addFormat(fs *flag.FlagSet) *outputFormat {
	f := outputFormat("text")
	fs.Var(&f, "format", "output format: text or json (docs/reference.md)")
	fs.BoolFunc("json", "the same as --format json", func(s string) error {
		if s == "false" {
			f = "text"
		} else {
			f = "json"
		}
		return nil
	})
	return &f
}

func (f *outputFormat) json() bool { return *f == "json" }

// count is a flag of how many (-n): a whole number of at least 1.
type count int

func (c *count) String() string { return strconv.Itoa(int(*c)) }

func (c *count) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return errors.New("a whole number, at least 1")
	}
	*c = count(n)
	return nil
}

// addCount adds a count flag to fs.
func addCount(fs *flag.FlagSet, name string, def int, usage string) *count {
	c := count(def)
	fs.Var(&c, name, usage)
	return &c
}
