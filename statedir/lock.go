package statedir

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"berth.dev/berth/reconcile"
)

// Lock makes sure one agent runs per state dir. The lock file holds the
// agent's pid, for commands that signal it; pidErr says the pid could not
// be written (the lock is held all the same).
func Lock(dir string) (unlock func(), pidErr, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("another berth agent is running on %s", dir)
	}
	// Write over the old pid, then cut the rest: on a full disk the block
	// the file already has is reused rather than freed and asked for again.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if _, err := f.WriteAt(pid, 0); err != nil {
		pidErr = fmt.Errorf("write pid to %s: %w", f.Name(), err)
	} else if err := f.Truncate(int64(len(pid))); err != nil {
		pidErr = fmt.Errorf("write pid to %s: %w", f.Name(), err)
	} else if err := f.Sync(); err != nil {
		pidErr = fmt.Errorf("write pid to %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, pidErr, nil
}

// Signal tells the running agent to pick up requests now (SIGUSR1). It
// returns false when no agent holds the state dir.
func Signal(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false // nobody holds it
	}
	b, _ := io.ReadAll(io.LimitReader(f, 64))
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false
	}
	return syscall.Kill(pid, syscall.SIGUSR1) == nil
}

// Submit leaves an operator's request (berth rollback, retry, pause,
// resume) in the env's directory for its agent, the only writer of
// state.json, and signals the agent to take it now; signalled is false
// when no agent runs (it applies the request when it starts).
func Submit(root, envDir string, r reconcile.Request) (signalled bool, err error) {
	r.At = time.Now().UTC()
	if err := os.MkdirAll(envDir, 0o700); err != nil {
		return false, fmt.Errorf("submit request: %w", err)
	}
	if err := reconcile.SubmitRequest(envDir, r); err != nil {
		return false, fmt.Errorf("submit request: %w", err)
	}
	return Signal(root), nil
}
