package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"berth.dev/berth/internal/termsafe"
	"berth.dev/berth/secretinit"
)

// Exit codes, documented in docs/operations.md.
const (
	exitOK      = 0 // success
	exitFailure = 1 // the command ran and failed (or found problems)
	exitUsage   = 2 // bad command line
	exitConfig  = 3 // the agent configuration is invalid
	exitOutage  = 4 // berth run --once: a dependency did not answer; try again later
)

// command is one berth subcommand.
type command struct {
	name    string
	usage   string // arguments, after the name
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{name: "run", usage: "[--config FILE] [--once] [--check-config] [--log-level LEVEL]", summary: "run the agent daemon: poll the config repo and reconcile this host", run: runRun},
		{name: "validate", usage: "[--env ENV] [--format text|json] [--policy AGENT_YAML] [DIR]", summary: "validate environments of a config repo checkout", run: runValidate},
		{name: "plan", usage: "[--config FILE] [--env ENV] [--format text|json] | --repo DIR [--path P] --from REF [--to REF] [--format text|markdown|json]", summary: "show what a deploy of the head (or a change of the repo) would do, changing nothing", run: runPlan},
		{name: "status", usage: "[--config FILE] [--env ENV] [--format text|json]", summary: "show the live revision and each managed container", run: runStatus},
		{name: "history", usage: "[--config FILE] [--env ENV] [--format text|json] [-n N]", summary: "list past passes with their result and reason", run: runHistory},
		{name: "rollback", usage: "[--config FILE] [--env ENV] [--fleet] [REV]", summary: "deploy a previous good revision and hold auto-deploy (--fleet: on every host)", run: runRollback},
		{name: "retry", usage: "[--config FILE] [--env ENV]", summary: "retry the last failed revision (with a fleet: clear its halts fleet-wide)", run: runRetry},
		{name: "pause", usage: "[--config FILE] [--env ENV] [--fleet] [--reason TEXT]", summary: "stop following the branch, keeping the live revision and self-heal", run: runPause},
		{name: "resume", usage: "[--config FILE] [--env ENV] [--fleet]", summary: "follow the branch again after a pause or a rollback", run: runResume},
		{name: "fleet", usage: "status [--env ENV] [--format text|json]", summary: "show every host of the env's fleet: revision, author, deploy, health", run: runFleet},
		{name: "ui", usage: "[--config FILE] [--listen ADDR] [--tls-cert FILE --tls-key FILE] [--basic-auth-file FILE] [--insecure-listen]", summary: "serve the fleet's read-only status page, read from etcd", run: runUI},
		{name: "jobs", usage: "list|history NAME|logs NAME [RUN]|run NAME", summary: "inspect and run scheduled jobs", run: runJobs},
		{name: "promote", usage: "--from ENV --to ENV [--dry-run] [DIR]", summary: "copy image digests from one environment to another", run: runPromote},
		{name: "version", usage: "[--format text|json]", summary: "print version, commit and Go version", run: runVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "-help":
		usage(stdout)
		return exitOK
	case "--version", "-version":
		return runVersion(ctx, nil, stdout, stderr)
	case "help": // berth help COMMAND is berth COMMAND --help
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		usage(stdout)
		return exitOK
	case "secret-init": // inside containers, not for operators: see secretinit.go
		return secretinit.Run(args[1:], os.Stdin, stderr)
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		if c.name != "run" { // the daemon logs through hclog, escaped
			stdout, stderr = termsafe.Writer{W: stdout}, termsafe.Writer{W: stderr}
		}
		return c.run(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "berth: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("berth: a GitOps agent for containers on plain virtual machines\n\n")
	b.WriteString("Usage:\n  berth COMMAND [ARGS]\n\nCommands:\n")
	for _, c := range commands() {
		left := c.name
		if c.usage != "" {
			left += " " + c.usage
		}
		fmt.Fprintf(&b, "  %-48s %s\n", left, c.summary)
	}
	b.WriteString("\nRun 'berth COMMAND -h' for a command's flags. Docs: docs/operations.md\n")
	io.WriteString(w, b.String())
}
