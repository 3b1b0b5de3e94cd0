package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/cliflags"
)

// runPromote prepares a promotion PR: the target environment gets the image
// digests of the source environment, rewritten where they live.
func runPromote(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("promote", "--from ENV --to ENV [--dry-run] [DIR]", stderr)
	from := fs.String("from", "", "environment to take image digests from (required)")
	to := fs.String("to", "", "environment to write them into (required)")
	dryRun := fs.Bool("dry-run", false, "print the diff, write nothing")
	if code, ok := cliflags.ParseArgs(fs, args, 0, 1, ""); !ok {
		return code
	}
	switch {
	case *from == "" && *to == "":
		return cliflags.UsageError(fs, "--from and --to are required")
	case *from == "":
		return cliflags.UsageError(fs, "--from is required: the environment to take image digests from")
	case *to == "":
		return cliflags.UsageError(fs, "--to is required: the environment to write them into")
	case *from == *to:
		return cliflags.UsageError(fs, "--from and --to name the same environment %q", *from)
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	p, err := envs.Promote(ctx, dir, *from, *to)
	if err != nil {
		return failed(stderr, "promote", err, exitFailure)
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(stderr, "skipped %s\n", s)
	}
	if len(p.Changes) == 0 {
		fmt.Fprintf(stdout, "envs/%s already runs the digests of envs/%s: nothing to promote\n", *to, *from)
		return exitOK
	}
	io.WriteString(stdout, p.Diff())
	for _, s := range p.Promoted {
		fmt.Fprintf(stdout, "promoted %s\n", s)
	}
	if *dryRun {
		return exitOK
	}
	for _, c := range p.Changes {
		if err := atomicfile.WriteFile(filepath.Join(dir, filepath.FromSlash(c.Path)), c.New, c.Mode); err != nil {
			return failed(stderr, "promote", err, exitFailure)
		}
	}
	return exitOK
}
