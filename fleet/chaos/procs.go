package chaos

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// agentProc is one agent subprocess and its proxy.
type agentProc struct {
	host string
	px   *proxy

	mu      sync.Mutex
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	exited  chan struct{}
	stopped bool          // SIGSTOPped
	clock   time.Duration // the offset in force (sent again on restart)
	log     *os.File
}

func (h *Harness) newAgent(host string) (*agentProc, error) {
	px, err := newProxy(h.cl.endpoints())
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(h.dir, "logs", host+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	ap := &agentProc{host: host, px: px, log: f}
	if err := h.startAgent(ap); err != nil {
		return nil, err
	}
	return ap, nil
}

// startAgent starts the agent's process (again).
func (h *Harness) startAgent(ap *agentProc) error {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	cmd := exec.Command(h.bin)
	cmd.Env = append(os.Environ(), "CHAOS_ROLE=agent", "CHAOS_HOST="+ap.host, "CHAOS_DIR="+h.dir,
		"CHAOS_EPS="+strings.Join(ap.px.endpoints(), ","), "CHAOS_TTL="+h.cfg.TTL.String(), "CHAOS_TIMEOUT="+h.cfg.Timeout.String(),
		fmt.Sprintf("CHAOS_KEEP=%d,%d", h.cfg.KeepRollouts, h.cfg.KeepMigrations), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = ap.log, ap.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent %s: %w", ap.host, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	ap.cmd, ap.stdin, ap.exited, ap.stopped = cmd, in, exited, false
	if ap.clock != 0 {
		ap.sendClockLocked()
	}
	return nil
}

func (ap *agentProc) alive() bool {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	select {
	case <-ap.exited:
		return false
	default:
		return true
	}
}

func (ap *agentProc) signal(sig syscall.Signal) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	_ = ap.cmd.Process.Signal(sig)
	switch sig {
	case syscall.SIGSTOP:
		ap.stopped = true
	case syscall.SIGCONT:
		ap.stopped = false
	}
}

// kill SIGKILLs the agent and waits until it is gone.
func (ap *agentProc) kill() {
	ap.mu.Lock()
	cmd, exited := ap.cmd, ap.exited
	ap.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// term stops the agent gracefully (SIGKILL after 15 s).
func (ap *agentProc) term() {
	ap.signal(syscall.SIGCONT)
	ap.mu.Lock()
	cmd, exited := ap.cmd, ap.exited
	ap.mu.Unlock()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

func (ap *agentProc) setClock(d time.Duration) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	ap.clock = d
	ap.sendClockLocked()
}

func (ap *agentProc) sendClockLocked() {
	b, _ := json.Marshal(map[string]int64{"clock": int64(ap.clock)})
	_, _ = ap.stdin.Write(append(b, '\n'))
}
