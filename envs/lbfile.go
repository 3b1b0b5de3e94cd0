package envs

import (
	"fmt"
	"path/filepath"
)

// LBFile is what an existing nginx upstream file says about itself
// (lb.ReadNginxFile): berth's first line names the environment and the
// upstream it was written for (Header); without it, Upstream is the first
// upstream the file defines and Env what berth's name for the file gives
// with it, if anything.
type LBFile struct {
	Exists        bool
	Env, Upstream string
	Header        bool
}

// nginxFileRefused says why env may not write its upstream into file, or
// "". berth's own name for the file (named) is taken unless the file there
// is another environment's or defines another upstream (names collide:
// env "a-b" with upstream "c" and env "a" with upstream "b-c" share
// berth-a-b-c.conf, so the file's content decides). Any other name, kept
// from a repository written before berth named the file, is taken only
// from a file whose first line hands it to this environment and upstream:
// never an operator's file, nor another environment's.
func nginxFileRefused(read func(string) (LBFile, error), file, named, env, upstream string) (msg, hint string) {
	f, err := read(file)
	if err != nil {
		return fmt.Sprintf("%s cannot be read: %v", file, err), "leave file: out; berth writes " + named
	}
	owner := fmt.Sprintf("# berth: env=%s upstream=%s", env, upstream)
	if file == named {
		switch {
		case !f.Exists || f.Upstream == "":
			return "", ""
		case f.Env != "" && f.Env != env || f.Upstream != upstream:
			who := "defines upstream " + f.Upstream
			if f.Env != "" {
				who = fmt.Sprintf("belongs to environment %s (upstream %s)", f.Env, f.Upstream)
			}
			return fmt.Sprintf("%s %s", file, who), "name an upstream of this environment's own"
		}
		return "", ""
	}
	switch {
	case !f.Exists:
		return fmt.Sprintf("%s is not berth's name for this upstream (%s)", file, filepath.Base(named)), "leave file: out; berth writes " + named
	case !f.Header:
		return fmt.Sprintf("%s is not a file berth wrote for environment %s, upstream %s", file, env, upstream), fmt.Sprintf("leave file: out (berth writes %s), or hand the file over: make `%s` its first line", named, owner)
	case f.Env != env:
		return fmt.Sprintf("%s belongs to environment %s (upstream %s)", file, f.Env, f.Upstream), "leave file: out; berth writes " + named
	case f.Upstream != upstream:
		return fmt.Sprintf("%s holds this environment's upstream %s, not %s", file, f.Upstream, upstream), "leave file: out; berth writes " + named
	}
	return "", ""
}
