package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// Set at link time by scripts/build:
// -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

// buildCommit is the commit berth was built from: the linker flag, else
// the VCS stamp the go command records when it can.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("version", "[--format text|json]", stderr)
	format := addFormat(fs)
	if code, ok := parseArgs(fs, args, 0, 0, ""); !ok {
		return code
	}
	v := versionJSON{Version: version, Commit: buildCommit(), Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if format.json() {
		return writeJSON(stdout, v)
	}
	fmt.Fprintf(stdout, "berth %s\ncommit %s\n%s %s\n", v.Version, v.Commit, v.Go, v.Platform)
	return exitOK
}

// versionJSON is `berth version --format json` (docs/reference.md).
type versionJSON struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}
