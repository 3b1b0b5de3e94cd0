package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Freezing, stopping and restarting a private dockerd, as the fault tests do.

// Pid is the daemon's process id.
func (p *PrivateDocker) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Pause freezes the daemon (SIGSTOP): it still accepts connections on its
// socket (the kernel queues them) but answers nothing, as a hung dockerd.
func (p *PrivateDocker) Pause() {
	p.t.Helper()
	pid := p.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		p.t.Fatalf("testenv: SIGSTOP dockerd: %v", err)
	}
	// The stop reaches each thread when it next runs: wait until every
	// one has stopped, or requests sent now might still be answered.
	deadline := time.Now().Add(10 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			p.t.Fatalf("testenv: dockerd %d not stopped 10 s after SIGSTOP", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// allStopped reports whether every thread of pid is stopped (state T).
func allStopped(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if len(stats) == 0 {
		return false
	}
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // a thread that just exited
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "T") {
			return false
		}
	}
	return true
}

// Resume lets a paused daemon go on (SIGCONT).
func (p *PrivateDocker) Resume() {
	p.t.Helper()
	if err := syscall.Kill(p.Pid(), syscall.SIGCONT); err != nil {
		p.t.Fatalf("testenv: SIGCONT dockerd: %v", err)
	}
}

// Stop stops the daemon as systemctl stop docker does (SIGTERM, then
// SIGKILL after a minute) and waits until it is gone. Without live-restore
// it stops the containers first.
func (p *PrivateDocker) Stop() {
	p.t.Helper()
	if err := p.stop(time.Minute); err != nil {
		p.t.Fatalf("testenv: stop dockerd: %v", err)
	}
}

func (p *PrivateDocker) stop(grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGCONT) // a paused daemon cannot stop
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return fmt.Errorf("dockerd did not stop within %s; killed", grace)
}

// Start starts a stopped daemon again on the same state and waits until
// it answers.
func (p *PrivateDocker) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatalf("testenv: restart dockerd: %v", err)
	}
}

// Restart is Stop then Start: systemctl restart docker.
func (p *PrivateDocker) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}
