package lb

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// An nginx upstream file says whose it is. berth's first line names the
// environment and the upstream it was written for; a file without that
// line (one an older berth wrote, or an operator's bootstrap file) is
// known by the upstream it defines and, under berth's own name
// berth-<env>-<upstream>.conf, the environment the name gives once the
// upstream is known (the name alone is ambiguous: env "a-b" with upstream
// "c" and env "a" with upstream "b-c" share it).

const ownerPrefix = "# berth: "

var (
	ownerRe    = regexp.MustCompile(`^# berth: env=(\S+) upstream=(\S+)$`)
	upstreamRe = regexp.MustCompile(`(?m)^\s*upstream\s+([A-Za-z0-9._-]+)\s*\{`)
	envNameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
)

// ownerLine is the first line of a file berth writes.
func ownerLine(env, upstream string) string {
	return fmt.Sprintf("%senv=%s upstream=%s\n", ownerPrefix, env, upstream)
}

// NginxFile is what an nginx upstream file says about itself.
type NginxFile struct {
	Exists bool
	// Env and Upstream are whose the file is: from berth's first line
	// (Header), else Upstream is the first upstream the file defines and
	// Env what berth's name for the file gives with it ("" otherwise).
	Env, Upstream string
	Header        bool
}

// ReadNginxFile reads the head of the upstream file at path (4 KiB, never
// waiting on a FIFO) and says whose it is.
func ReadNginxFile(path string) (NginxFile, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return NginxFile{}, nil
	}
	if err != nil {
		return NginxFile{Exists: true}, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return NginxFile{Exists: true}, fmt.Errorf("%s is not a regular file", path)
	}
	head, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return NginxFile{Exists: true}, err
	}
	return parseNginxFile(filepath.Base(path), head), nil
}

func parseNginxFile(name string, head []byte) NginxFile {
	out := NginxFile{Exists: true}
	first, _, _ := strings.Cut(string(head), "\n")
	if m := ownerRe.FindStringSubmatch(strings.TrimRight(first, "\r")); m != nil {
		out.Env, out.Upstream, out.Header = m[1], m[2], true
		return out
	}
	if m := upstreamRe.FindSubmatch(head); m != nil {
		out.Upstream = string(m[1])
		rest, ok := strings.CutPrefix(name, "berth-")
		env, ok2 := strings.CutSuffix(rest, "-"+out.Upstream+".conf")
		if ok && ok2 && envNameRe.MatchString(env) {
			out.Env = env
		}
	}
	return out
}

// NginxOwner names the environment other than self whose upstream file in
// dir is upstream's, or "".
func NginxOwner(dir, upstream, self string) string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		f, err := ReadNginxFile(filepath.Join(dir, e.Name()))
		if err == nil && f.Upstream == upstream && f.Env != "" && f.Env != self {
			return f.Env
		}
	}
	return ""
}

// notOurs says why berth must not overwrite a file that says prev about
// itself with env's upstream, or "".
func notOurs(prev NginxFile, env, upstream string) string {
	switch {
	case !prev.Exists:
	case prev.Header && (prev.Env != env || prev.Upstream != upstream):
		return fmt.Sprintf("it was written for environment %s, upstream %s", prev.Env, prev.Upstream)
	case prev.Upstream != "" && prev.Upstream != upstream:
		return fmt.Sprintf("it defines upstream %s", prev.Upstream)
	case prev.Env != "" && env != "" && prev.Env != env:
		return fmt.Sprintf("it belongs to environment %s", prev.Env)
	}
	return ""
}
