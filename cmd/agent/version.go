package main

import (
	"context"
	"fmt"
	"io"

	"berth.dev/berth/internal/buildinfo"
	"berth.dev/berth/internal/cliflags"
)

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := cliflags.New("version", "[--format text|json]", stderr)
	format := cliflags.AddFormat(fs)
	if code, ok := cliflags.ParseArgs(fs, args, 0, 0, ""); !ok {
		return code
	}
	v := buildinfo.Get()
	if format.JSON() {
		return writeJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "berth %s\ncommit %s\n%s %s\n", v.Version, v.Commit, v.Go, v.Platform)
	return exitOK
}
