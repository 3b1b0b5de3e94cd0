// Package testenv gives berth's tests real services: a Docker engine, an OCI
// registry, test images, a Vault server, a Git server, nginx and HAProxy.
//
// Each helper skips the test when its service is missing, unless
// BERTH_INTEGRATION=1 is set (scripts/test sets it), in which case a missing
// service fails the test: an integration test that skips in CI is a failure.
//
// Services that are built rather than installed (the registry and Vault
// binaries, the test app) are looked up in the cache directory that
// scripts/test fills; see CacheDir.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Integration reports whether missing services must fail tests instead of
// skipping them.
func Integration() bool { return os.Getenv("BERTH_INTEGRATION") == "1" }

// unavailable skips or fails t because service cannot be had.
func unavailable(t testing.TB, service string, err error) {
	t.Helper()
	msg := fmt.Sprintf("testenv: %s unavailable: %v", service, err)
	if Integration() {
		t.Fatalf("%s (BERTH_INTEGRATION=1 turns this skip into a failure; run scripts/test)", msg)
	}
	t.Skip(msg)
}

// shortSkip skips t under -short: `go test -short ./...` is the quick loop
// of unit tests and starts no real service, whatever BERTH_INTEGRATION says.
func shortSkip(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("testenv: %s: -short starts no real service", what)
	}
}

// CacheDir is where scripts/test keeps built service binaries between runs:
// $BERTH_CACHE_DIR, else $XDG_CACHE_HOME/berth, else ~/.cache/berth.
func CacheDir() string {
	if d := os.Getenv("BERTH_CACHE_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "berth")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "berth-cache")
	}
	return filepath.Join(home, ".cache", "berth")
}

// moduleStamp hashes go.mod and go.sum of a wrapper module beside this file.
func moduleStamp(dir string) (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("cannot locate internal/testenv")
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "build.sh"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(self), dir, f))
		if errors.Is(err, fs.ErrNotExist) && f == "build.sh" {
			continue // built by scripts/lib.sh itself
		}
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// FreePort returns a loopback TCP port that was free a moment ago. Services
// that cannot listen on port 0 themselves need one; callers retry on the
// rare collision. It is picked at random in 20000–25999: below the
// kernel's ephemeral range (32768–60999 here), where neither an outgoing
// connection nor the shared Docker engine, which publishes ports from that
// range, takes it before the service binds it (a port the kernel handed
// out for :0 was taken back by a container's proxy under load), and below
// the private engines' blocks (26000–32499, dockerd_ports.go).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(6000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("testenv: free port: none of 100 random ports in 20000–25999 is free")
	return 0
}

// logWriter sends a child process's output to the test log, line by line,
// until the test ends.
type logWriter struct {
	t      testing.TB
	prefix string
	quiet  []func(line string) bool
	mu     sync.Mutex
	closed bool
}

// LogWriter is a writer to the test's log, each line prefixed, until the
// test ends: for a logger whose lines a failure's output should hold.
func LogWriter(t testing.TB, prefix string) io.Writer { return newLogWriter(t, prefix) }

func newLogWriter(t testing.TB, prefix string) *logWriter {
	w := &logWriter{t: t, prefix: prefix}
	t.Cleanup(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
	})
	return w
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		// Logging after the test ended panics; the process is being
		// stopped anyway.
		return len(p), nil
	}
lines:
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		for _, q := range w.quiet {
			if q(line) {
				continue lines
			}
		}
		w.t.Logf("%s: %s", w.prefix, line)
	}
	return len(p), nil
}
