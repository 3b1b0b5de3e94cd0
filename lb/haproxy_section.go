package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/failure"
)

// The persisted half of the HAProxy switch.
//
// HAProxy cannot split a section across files (a second `backend NAME` is a
// duplicate, and a file cannot continue the previous file's section: a
// `server` line at the top of a file is "out of section"; both checked with
// 2.6's `haproxy -c`). So the backend's whole section lives in a file of its
// own, SERVERS_DIR/NAME.cfg, which the operator writes once (balance,
// checks, default-server, timeouts…) and HAProxy loads with
// `-f SERVERS_DIR`. Putting it there is how the operator hands the backend
// to berth. berth rewrites only its own `server berth-*` lines, at the end
// of the section, and keeps every other line byte for byte.

// sectionMarker precedes berth's server lines; it is dropped on reading and
// written again, so it never accumulates. With the env berth switches the
// backend for, it ends in " (env NAME)": how the other envs of the host
// know the backend is taken (Owner).
const sectionMarker = "    # berth: the live servers below are rewritten on every switch"

// sectionKeywords open a section in HAProxy 2.6's config. berth's file may
// hold only the one backend section.
var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"userlist": true, "peers": true, "resolvers": true, "mailers": true, "program": true,
	"http-errors": true, "ring": true, "cache": true, "log-forward": true,
}

// section is the backend's file as read from servers_dir.
type section struct {
	path string
	raw  []byte
	// kept are the operator's lines (everything but berth's server lines
	// and the marker), trailing blank lines removed.
	kept []string
	// serverOpts are the default-server options that `add server` accepts,
	// to repeat on every server berth adds at runtime (the runtime API
	// ignores default-server; the file does not).
	serverOpts []string
	// checked: serverOpts enable health checks.
	checked bool
	// env is the env the marker line names ("" when none).
	env string
}

// markerEnv reads the env a marker line names.
func markerEnv(line string) (string, bool) {
	rest := strings.TrimPrefix(strings.TrimSpace(line), strings.TrimSpace(sectionMarker))
	env, ok := strings.CutPrefix(strings.TrimSpace(rest), "(env ")
	env, ok2 := strings.CutSuffix(env, ")")
	return env, ok && ok2 && env != ""
}

// HAProxyOwner names the env whose live servers berth last wrote into
// backend's file in serversDir ("" when none did, or the file is
// unreadable): one backend belongs to one env of the host.
func HAProxyOwner(serversDir, backend string) string {
	if !ValidBackendName(backend) {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(serversDir, fileName(backend)))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if env, ok := markerEnv(line); ok && strings.HasPrefix(strings.TrimSpace(line), strings.TrimSpace(sectionMarker)) {
			return env
		}
	}
	return ""
}

// readSection reads and checks the backend's file. A missing file, or one
// holding anything but `backend NAME`, means the backend is not berth's: a
// verdict. An I/O error is not the revision's fault.
func readSection(path, backend string) (*section, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, failure.AsVerdict(fmt.Errorf("backend %s is not declared for berth: HAProxy must load its section from %s (see docs/operations.md, HAProxy)", backend, path))
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	s := &section{path: path, raw: raw}
	var problems []error
	sawBackend := false
	for n, line := range strings.Split(string(raw), "\n") {
		words := configWords(line)
		if len(words) == 0 {
			if !strings.HasPrefix(strings.TrimSpace(line), strings.TrimSpace(sectionMarker)) {
				s.kept = append(s.kept, line)
			} else if env, ok := markerEnv(line); ok {
				s.env = env
			}
			continue
		}
		switch kw := words[0]; {
		case sectionKeywords[kw]:
			if kw != "backend" || len(words) < 2 || words[1] != backend || sawBackend {
				problems = append(problems, fmt.Errorf("%s:%d: %q: this file may hold only the section `backend %s`", path, n+1, strings.TrimSpace(line), backend))
			}
			sawBackend = true
		case !sawBackend:
			problems = append(problems, fmt.Errorf("%s:%d: %q before `backend %s`", path, n+1, strings.TrimSpace(line), backend))
		case kw == "server" && len(words) >= 2 && isBerthServer(words[1]):
			continue // rewritten by render
		case kw == "default-server":
			opts, checked, err := dynamicServerOpts(words[1:])
			if err != nil {
				problems = append(problems, fmt.Errorf("%s:%d: default-server: %w", path, n+1, err))
			}
			s.serverOpts = append(s.serverOpts, opts...)
			if checked != nil {
				s.checked = *checked
			}
		}
		s.kept = append(s.kept, line)
	}
	if !sawBackend && len(problems) == 0 {
		problems = append(problems, fmt.Errorf("%s holds no `backend %s` section", path, backend))
	}
	if len(problems) > 0 {
		return nil, failure.AsVerdict(fmt.Errorf("backend %s is not berth's as declared: %w", backend, errors.Join(problems...)))
	}
	if s.checked {
		// The last check or no-check wins, as in HAProxy.
		s.serverOpts = append([]string{"check"}, s.serverOpts...)
	}
	for len(s.kept) > 0 && strings.TrimSpace(s.kept[len(s.kept)-1]) == "" {
		s.kept = s.kept[:len(s.kept)-1]
	}
	return s, nil
}

// render is the file with berth's server lines set to names (name →
// "IP:PORT" in addr), sorted: the same servers make the same file. env,
// when set, is named in the marker line.
func (s *section) render(names []string, addr map[string]string, env string) []byte {
	names = slices.Sorted(slices.Values(names))
	var b bytes.Buffer
	for _, l := range s.kept {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString(sectionMarker)
	if env != "" {
		b.WriteString(" (env " + env + ")")
	}
	b.WriteByte('\n')
	for _, n := range names {
		fmt.Fprintf(&b, "    server %s %s\n", n, addr[n])
	}
	return b.Bytes()
}

// configWords splits a config line into words, without its comment. berth
// reads only simple lines; quoting and escapes are kept verbatim in the
// words they belong to (and refused where berth would forward them).
func configWords(line string) []string {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	return strings.Fields(line)
}

// Keywords of a server line, as HAProxy 2.6 reads them: those `add server`
// accepts (management guide, "add server"), with the number of arguments
// each takes, and those it does not, which berth leaves to the file.
var (
	dynamicServerKeywords = map[string]int{
		"agent-check": 0, "allow-0rtt": 0, "check": 0, "check-send-proxy": 0, "check-ssl": 0,
		"check-via-socks4": 0, "force-sslv3": 0, "force-tlsv10": 0, "force-tlsv11": 0,
		"force-tlsv12": 0, "force-tlsv13": 0, "no-ssl-reuse": 0, "no-sslv3": 0, "no-tlsv10": 0,
		"no-tlsv11": 0, "no-tlsv12": 0, "no-tlsv13": 0, "no-tls-tickets": 0, "send-proxy": 0,
		"send-proxy-v2": 0, "send-proxy-v2-ssl": 0, "send-proxy-v2-ssl-cn": 0, "ssl": 0,
		"tfo": 0, "tls-tickets": 0,
		"agent-addr": 1, "agent-inter": 1, "agent-port": 1, "agent-send": 1, "alpn": 1,
		"addr": 1, "ca-file": 1, "check-alpn": 1, "check-proto": 1, "check-sni": 1,
		"ciphers": 1, "ciphersuites": 1, "crl-file": 1, "crt": 1, "downinter": 1,
		"error-limit": 1, "fall": 1, "fastinter": 1, "inter": 1, "maxconn": 1, "maxqueue": 1,
		"minconn": 1, "npn": 1, "observe": 1, "on-error": 1, "on-marked-down": 1,
		"on-marked-up": 1, "pool-low-conn": 1, "pool-max-conn": 1, "pool-purge-delay": 1,
		"port": 1, "proto": 1, "proxy-v2-options": 1, "rise": 1, "slowstart": 1, "sni": 1,
		"source": 1, "usesrc": 1, "ssl-max-ver": 1, "ssl-min-ver": 1, "verify": 1,
		"verifyhost": 1, "weight": 1, "ws": 1,
	}
	// Not for berth's servers, or not settable at runtime: skipped. A
	// keyword in neither list is refused, since its arity is unknown.
	staticServerKeywords = map[string]int{
		"backup": 0, "disabled": 0, "enabled": 0, "non-stick": 0, "stick": 0, "ssl-reuse": 0,
		"no-agent-check": 0, "no-backup": 0, "no-check-ssl": 0, "no-send-proxy": 0,
		"no-send-proxy-v2": 0, "no-send-proxy-v2-ssl": 0, "no-send-proxy-v2-ssl-cn": 0,
		"no-ssl": 0, "no-tfo": 0, "no-verifyhost": 0,
		"cookie": 1, "id": 1, "track": 1, "init-addr": 1, "resolvers": 1, "resolve-prefer": 1,
		"resolve-net": 1, "resolve-opts": 1, "redir": 1, "namespace": 1, "max-reuse": 1,
		"socks4": 1, "log-proto": 1, "curves": 1, "sigalgs": 1, "client-sigalgs": 1, "hash-key": 1,
	}
)

// dynamicServerOpts keeps the default-server options `add server` accepts,
// but check: checked is set when the line turns health checks on or off.
func dynamicServerOpts(args []string) (opts []string, checked *bool, err error) {
	var problems []error
	for i := 0; i < len(args); i++ {
		kw := args[i]
		if n, ok := dynamicServerKeywords[kw]; ok {
			if i+n >= len(args) {
				return nil, nil, fmt.Errorf("%s needs an argument", kw)
			}
			for _, a := range args[i : i+n+1] {
				if strings.ContainsAny(a, "\"'\\;`") {
					problems = append(problems, fmt.Errorf("%s %s: quoted or escaped arguments cannot be repeated on the runtime API", kw, a))
				}
			}
			if kw == "check" {
				t := true
				checked = &t
				continue // readSection puts it first if it wins
			}
			opts = append(opts, args[i:i+n+1]...)
			i += n
			continue
		}
		if n, ok := staticServerKeywords[kw]; ok {
			i += n
			continue
		}
		if kw == "no-check" {
			f := false
			checked = &f
			continue
		}
		problems = append(problems, fmt.Errorf("berth does not know the server keyword %q, so it cannot repeat it on `add server`", kw))
	}
	return opts, checked, errors.Join(problems...)
}

// checkConfig runs `COMMAND -c` (HAProxy's config check over every file the
// command names). A rejection is a verdict; not being able to run HAProxy is
// an outage.
func (h *HAProxy) checkConfig(ctx context.Context) error {
	cmdline := h.command()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cmdline[0], append(append([]string{}, cmdline[1:]...), "-c")...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || ctx.Err() != nil {
		return failure.AsOutage(fmt.Errorf("run %s -c: %w", strings.Join(cmdline, " "), err))
	}
	return failure.AsVerdict(fmt.Errorf("haproxy rejected %s (backend %s): %s", h.file(), h.Backend, alerts(out.Bytes())))
}

// alerts keeps HAProxy's [ALERT] lines (the reasons), else all its output.
func alerts(out []byte) string {
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "[ALERT]") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return strings.TrimSpace(string(out))
	}
	return strings.Join(keep, "; ")
}

// writeSectionFile replaces path atomically, keeping its mode (0644 for HAProxy
// to read when it runs as its own user).
func writeSectionFile(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	return atomicfile.WriteFile(path, data, mode)
}

// fileName is NAME.cfg: HAProxy loads only *.cfg files from a directory
// given to -f, and skips the hidden temp files atomicfile writes.
func fileName(backend string) string { return backend + ".cfg" }

func (h *HAProxy) file() string { return filepath.Join(h.ServersDir, fileName(h.Backend)) }
