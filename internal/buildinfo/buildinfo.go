// Package buildinfo owns what a berth binary says of itself: its version
// and the commit it was built from (set at link time by scripts/build:
// -ldflags "-X berth.dev/berth/internal/buildinfo.version=… -X
// berth.dev/berth/internal/buildinfo.commit=…"), its Go and platform.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

var (
	version = "dev"
	commit  = ""
)

// Info is `berth version --format json` (docs/reference.md).
type Info struct {
	Version  string `json:"version"`
	Commit   string `json:"commit"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// Get is this binary's Info. The commit is the linker flag's, else the
// VCS stamp the go command records when it can, else "unknown".
func Get() Info {
	i := Info{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if i.Commit == "" {
		i.Commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					i.Commit = s.Value
				}
			}
		}
	}
	return i
}
