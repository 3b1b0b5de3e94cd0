// Package cliflags owns the conventions every berth command follows on
// its command line: each command has its own flag set, flags may come
// after positional arguments, a wrong flag or argument count stops with
// the reason then the usage (exit 2), --format text|json with --json kept
// as an alias, and -n counts of at least 1.
package cliflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Exit codes of a command stopped by its command line.
const (
	ExitOK    = 0 // help was asked for
	ExitUsage = 2 // bad command line
)

// New returns a command's flag set: errors and usage go to stderr.
func New(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("berth "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: berth %s %s\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// UsageError stops a command called wrongly: the reason, then the usage.
func UsageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "%s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return ExitUsage
}

// Parse parses args, returning the exit code to stop with when the
// command must not go on (help asked for, or bad flags: the flag package
// says which, then prints the usage). Flags may come after positional
// arguments ("berth jobs logs NAME --config FILE").
func Parse(fs *flag.FlagSet, args []string) (int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return ExitOK, false
			}
			return ExitUsage, false
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

// ParseArgs is Parse wanting between min and max positional arguments;
// what names the missing ones ("NAME").
func ParseArgs(fs *flag.FlagSet, args []string, min, max int, what string) (int, bool) {
	if code, ok := Parse(fs, args); !ok {
		return code, false
	}
	switch n := fs.NArg(); {
	case n < min:
		return UsageError(fs, "missing %s", what), false
	case n > max:
		return UsageError(fs, "unexpected argument %q", fs.Arg(max)), false
	}
	return 0, true
}

// Format is a command's --format: text (default) or json.
type Format string

func (f *Format) String() string { return string(*f) }

func (f *Format) Set(s string) error {
	switch s {
	case "text", "json":
		*f = Format(s)
	case "table": // berth fleet status's older name for text
		*f = "text"
	default:
		return errors.New("text or json")
	}
	return nil
}

// JSON says whether the output is JSON.
func (f *Format) JSON() bool { return *f == "json" }

// AddFormat adds --format and its alias --json to fs.
func AddFormat(fs *flag.FlagSet) *Format {
	f := Format("text")
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

// List is a repeatable flag (--env a --env b).
type List []string

func (l *List) String() string     { return strings.Join(*l, ",") }
func (l *List) Set(s string) error { *l = append(*l, s); return nil }

// Count is a flag of how many (-n): a whole number of at least 1.
type Count int

func (c *Count) String() string { return strconv.Itoa(int(*c)) }

func (c *Count) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return errors.New("a whole number, at least 1")
	}
	*c = Count(n)
	return nil
}

// AddCount adds a count flag to fs.
func AddCount(fs *flag.FlagSet, name string, def int, usage string) *Count {
	c := Count(def)
	fs.Var(&c, name, usage)
	return &c
}
