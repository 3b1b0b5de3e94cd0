package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Etcd is one real etcd member running as its own process on loopback
// ports, with its data in a temp dir: Debian's etcd-server (3.4), or the
// binary $BERTH_ETCD_BIN names. Tests stop, kill, pause and restart it to
// make outages, crashes and leader changes.
//
// The in-process server (go.etcd.io/etcd/server/v3/embed) is not here on
// purpose: importing it from testenv would compile etcd's server into
// every test binary that uses testenv. Package fleet's own tests embed it.
type Etcd struct {
	Name      string
	Dir       string
	ClientURL string
	PeerURL   string

	t    testing.TB
	bin  string
	args []string
	mu   sync.Mutex
	proc *process
}

// EtcdCluster is several members forming one cluster.
type EtcdCluster struct {
	Members []*Etcd
}

// etcdBinary finds the etcd server binary.
func etcdBinary() (string, error) {
	if p := os.Getenv("BERTH_ETCD_BIN"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd not installed (apt-get install etcd-server; scripts/test does, or set BERTH_ETCD_BIN)")
	}
	return p, nil
}

// StartEtcd starts a single-member etcd.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	return StartEtcdCluster(t, 1).Members[0]
}

// StartEtcdCluster starts n members on loopback ports and waits until the
// cluster has a leader.
func StartEtcdCluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	bin, err := etcdBinary()
	if err != nil {
		unavailable(t, "etcd", err)
	}
	c := &EtcdCluster{}
	var initial []string
	for i := range n {
		m := &Etcd{
			Name:      fmt.Sprintf("m%d", i),
			Dir:       filepath.Join(t.TempDir(), "etcd"),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			t:         t,
			bin:       bin,
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	token := "berth-test-" + randomID()
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", token,
			// Fast elections, as on a LAN; a leader change takes about a
			// second.
			"--heartbeat-interval", "100", "--election-timeout", "1000",
			"--logger", "zap", "--log-outputs", "stderr", "--log-level", "error",
		}
		m.Start()
	}
	for _, m := range c.Members {
		if err := m.waitHealthy(30 * time.Second); err != nil {
			unavailable(t, "etcd", err)
		}
	}
	return c
}

// Endpoints are the members' client URLs.
func (c *EtcdCluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Leader is the member that is the leader now (waiting up to 10 s for one).
func (c *EtcdCluster) Leader(t testing.TB) *Etcd {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range c.Members {
			if st, err := m.Status(); err == nil && st.Leader != "" && st.Leader == st.Header.MemberID {
				return m
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: etcd cluster has no leader after 10 s")
	return nil
}

// Start starts the member (again), with its data dir as it is.
func (e *Etcd) Start() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc != nil {
		select {
		case <-e.proc.exited:
		default:
			return // running
		}
	}
	p, err := startProcess(e.t, "etcd "+e.Name, exec.Command(e.bin, e.args...))
	if err != nil {
		unavailable(e.t, "etcd", err)
	}
	e.proc = p
}

// Stop stops the member gracefully and waits for it to exit.
func (e *Etcd) Stop() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Kill kills the member (SIGKILL) and waits for it to exit.
func (e *Etcd) Kill() {
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

// Restart stops the member and starts it again, waiting until it is
// healthy.
func (e *Etcd) Restart() {
	e.t.Helper()
	e.Stop()
	e.Start()
	if err := e.waitHealthy(30 * time.Second); err != nil {
		e.t.Fatalf("testenv: etcd %s after restart: %v", e.Name, err)
	}
}

// WaitHealthy waits until the member serves with a leader.
func (e *Etcd) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := e.waitHealthy(timeout); err != nil {
		t.Fatalf("testenv: etcd %s: %v", e.Name, err)
	}
}

func (e *Etcd) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := http.Client{Timeout: time.Second}
	var last error
	for time.Now().Before(deadline) {
		e.mu.Lock()
		p := e.proc
		e.mu.Unlock()
		select {
		case <-p.exited:
			return fmt.Errorf("etcd %s exited: %v", e.Name, p.err)
		default:
		}
		resp, err := c.Get(e.ClientURL + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(b, []byte(`"health":"true"`)) {
				return nil
			}
			err = fmt.Errorf("health: %s", b)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcd %s not healthy after %s: %v", e.Name, timeout, last)
}

// EtcdStatus is the member's status from its JSON gateway.
type EtcdStatus struct {
	Header struct {
		MemberID string `json:"member_id"`
	} `json:"header"`
	Leader  string `json:"leader"`
	Version string `json:"version"`
	DBSize  string `json:"dbSize"`
}

// Status asks the member for its status (leader, version, db size).
func (e *Etcd) Status() (*EtcdStatus, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Post(e.ClientURL+"/v3/maintenance/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st EtcdStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Metrics returns the member's Prometheus metrics text.
func (e *Etcd) Metrics() (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(e.ClientURL + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Pid is the member's process id (0 when it is not running).
func (e *Etcd) Pid() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.proc == nil {
		return 0
	}
	return e.proc.cmd.Process.Pid
}
