package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HAProxy is Debian's HAProxy in master-worker mode (`haproxy -W -db`) with
// everything in a temp dir: the operator's main config (global with an
// admin stats socket, defaults, one HTTP frontend on a reserved loopback
// port), and ServersDir, loaded with a second -f, where the backend's own
// section file lives — the file berth rewrites, as on a real host.
type HAProxy struct {
	Dir        string
	Config     string // the operator's main config
	ServersDir string // loaded with -f; holds BACKEND.cfg
	Socket     string // runtime API: stats socket, mode 600, level admin
	APIPort    int    // the same runtime API on a loopback TCP port
	Port       int    // the frontend listens here

	backend string
	proc    *process
}

// HAProxyBackend is the default section StartHAProxy writes: round robin
// (a dynamic algorithm, which `add server` needs), HTTP checks, and short
// intervals while a server is DOWN or changing state, so a new server is UP
// (rise 2) about 0.2 s after it is added.
func HAProxyBackend(name string) string {
	return fmt.Sprintf(`backend %s
    balance roundrobin
    option httpchk GET /
    default-server check inter 1s fastinter 100ms downinter 100ms rise 2 fall 2
`, name)
}

// NewHAProxy prepares the temp dir and main config for a frontend that sends
// everything to backend. Write ServersDir/BACKEND.cfg (see HAProxyBackend),
// then call Start.
func NewHAProxy(t testing.TB, backend string) *HAProxy {
	t.Helper()
	shortSkip(t, "NewHAProxy")
	if _, err := exec.LookPath("haproxy"); err != nil {
		unavailable(t, "haproxy", err)
	}
	// Unix socket paths are short (108 bytes); t.TempDir can be long.
	dir, err := os.MkdirTemp("", "berth-haproxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &HAProxy{
		Dir:        dir,
		Config:     filepath.Join(dir, "haproxy.cfg"),
		ServersDir: filepath.Join(dir, "berth.d"),
		Socket:     filepath.Join(dir, "admin.sock"),
		APIPort:    FreePort(t),
		Port:       FreePort(t),
		backend:    backend,
	}
	if err := os.MkdirAll(h.ServersDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global
    stats socket %s mode 600 level admin
    stats socket ipv4@127.0.0.1:%d level admin
    stats timeout 30s
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 10s

frontend www
    bind 127.0.0.1:%d
    default_backend %s
`, h.Socket, h.APIPort, h.Port, backend)
	if err := os.WriteFile(h.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// StartHAProxy starts HAProxy with backend's section (HAProxyBackend) and
// no server in it yet.
func StartHAProxy(t testing.TB, backend string) *HAProxy {
	t.Helper()
	h := NewHAProxy(t, backend)
	h.WriteSection(t, HAProxyBackend(backend))
	h.Start(t)
	return h
}

// WriteSection writes the backend's section file.
func (h *HAProxy) WriteSection(t testing.TB, section string) {
	t.Helper()
	if err := os.WriteFile(h.SectionFile(), []byte(section), 0o644); err != nil {
		t.Fatal(err)
	}
}

// SectionFile is ServersDir/BACKEND.cfg.
func (h *HAProxy) SectionFile() string { return filepath.Join(h.ServersDir, h.backend+".cfg") }

// Args are the flags selecting this instance's config files.
func (h *HAProxy) Args() []string { return []string{"-f", h.Config, "-f", h.ServersDir} }

// RuntimeAPI is the runtime API address in berth's form.
func (h *HAProxy) RuntimeAPI() string { return "unix:" + h.Socket }

// TCPRuntimeAPI is the runtime API on its loopback TCP port.
func (h *HAProxy) TCPRuntimeAPI() string { return fmt.Sprintf("127.0.0.1:%d", h.APIPort) }

// URL is the frontend's base URL.
func (h *HAProxy) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", h.Port) }

// Start checks the config, runs HAProxy and waits until both the frontend
// and the runtime API answer.
func (h *HAProxy) Start(t testing.TB) {
	t.Helper()
	if out, err := exec.Command("haproxy", append(h.Args(), "-c")...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: haproxy -c: %v\n%s", err, out)
	}
	p, err := startProcess(t, "haproxy", exec.Command("haproxy", append([]string{"-W", "-db"}, h.Args()...)...))
	if err != nil {
		unavailable(t, "haproxy", err)
	}
	h.proc = p
	if err := p.waitTCP(fmt.Sprintf("127.0.0.1:%d", h.Port), 10*time.Second); err != nil {
		t.Fatalf("testenv: haproxy not answering on %d: %v", h.Port, err)
	}
	if _, err := h.workerPID(10 * time.Second); err != nil {
		t.Fatalf("testenv: haproxy runtime API: %v", err)
	}
}

// Stop stops HAProxy (the master and its worker) and waits for it to exit.
func (h *HAProxy) Stop(t testing.TB) {
	t.Helper()
	if h.proc != nil {
		h.proc.stop()
		h.proc = nil
	}
}

// Restart stops HAProxy and starts it again from its config files: what
// survives is what the files say.
func (h *HAProxy) Restart(t testing.TB) {
	t.Helper()
	h.Stop(t)
	h.Start(t)
}

// Reload sends USR2 to the master (a seamless reload: a new worker reads
// the config files, the old one finishes its connections) and waits until
// the runtime API is served by the new worker.
func (h *HAProxy) Reload(t testing.TB) {
	t.Helper()
	before, err := h.workerPID(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.proc.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatalf("testenv: haproxy reload: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		pid, err := h.workerPID(time.Second)
		if err == nil && pid != before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: haproxy reload: the worker is still %s after 10s (%v)", before, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Command sends one runtime API command and returns the answer.
func (h *HAProxy) Command(t testing.TB, cmd string) string {
	t.Helper()
	out, err := haproxyCommand(h.Socket, cmd)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// workerPID is the Pid `show info` reports: the worker serving the API.
func (h *HAProxy) workerPID(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := haproxyCommand(h.Socket, "show info")
		if err == nil {
			for _, l := range strings.Split(out, "\n") {
				if pid, ok := strings.CutPrefix(l, "Pid: "); ok {
					return strings.TrimSpace(pid), nil
				}
			}
			err = fmt.Errorf("no Pid in show info: %q", out)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// haproxyCommand runs one runtime API command: one connection, read to EOF.
func haproxyCommand(socket, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// AddBackend adds another backend to an HAProxy not started yet: its
// section file (HAProxyBackend) in ServersDir, and a frontend of its own on
// a reserved loopback port. It returns that frontend's base URL.
func (h *HAProxy) AddBackend(t testing.TB, name string) string {
	t.Helper()
	port := FreePort(t)
	f, err := os.OpenFile(h.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "\nfrontend www-%s\n    bind 127.0.0.1:%d\n    default_backend %s\n", name, port, name); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.ServersDir, name+".cfg"), []byte(HAProxyBackend(name)), 0o644); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}
