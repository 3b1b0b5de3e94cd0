package chaos

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"berth.dev/berth/internal/porthold"
)

// cluster is a three-member etcd cluster of this client's release
// (etcd's own server, embedded), each member its own process of this
// binary, so the nemesis can SIGKILL it. Data is fsynced by etcd; a
// killed member restarts on its data dir. The cluster never compacts:
// the checker reads its whole MVCC history at the end.
type cluster struct {
	bin     string
	logs    string
	members []*member
}

type member struct {
	name, dir, client, peer string
	env                     []string
	log                     *os.File
	mu                      sync.Mutex
	cmd                     *exec.Cmd
	exited                  chan struct{}
	// holds keep a killed member's ports until it restarts: an outgoing
	// connection or Docker's proxy may take a port of the ephemeral range
	// meanwhile, and the member could not come back.
	holds []*porthold.Hold
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startCluster(bin, dir string, n int) (*cluster, error) {
	c := &cluster{bin: bin, logs: filepath.Join(dir, "logs")}
	if err := os.MkdirAll(c.logs, 0o755); err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		ca, err := freeAddr()
		if err != nil {
			return nil, err
		}
		pa, err := freeAddr()
		if err != nil {
			return nil, err
		}
		m := &member{name: fmt.Sprintf("etcd-%d", i+1), dir: filepath.Join(dir, "etcd", fmt.Sprintf("m%d", i+1)),
			client: "http://" + ca, peer: "http://" + pa}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range c.members {
		m.env = []string{"CHAOS_ROLE=etcd", "CHAOS_ETCD_NAME=" + m.name, "CHAOS_ETCD_DIR=" + m.dir,
			"CHAOS_ETCD_CLIENT=" + m.client, "CHAOS_ETCD_PEER=" + m.peer, "CHAOS_ETCD_INITIAL=" + strings.Join(initial, ",")}
		f, err := os.Create(filepath.Join(c.logs, m.name+".log"))
		if err != nil {
			return nil, err
		}
		m.log = f
		if err := c.start(m); err != nil {
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := m.waitHealthy(60 * time.Second); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.client)
	}
	return out
}

// start starts m (again) on its data dir.
func (c *cluster) start(m *member) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		select {
		case <-m.exited:
		default:
			return nil
		}
	}
	m.releasePorts()
	cmd := exec.Command(c.bin)
	cmd.Env = append(os.Environ(), m.env...)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited
	return nil
}

// kill SIGKILLs m and waits for it to exit.
func (m *member) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.holds) > 0 {
		return
	}
	for _, addr := range []string{m.client, m.peer} {
		u, err := url.Parse(addr)
		if err != nil {
			continue
		}
		n, _ := strconv.Atoi(u.Port())
		if h, err := porthold.Bind(n); err == nil {
			m.holds = append(m.holds, h)
		}
	}
}

// releasePorts frees the ports kill held; m.mu is held.
func (m *member) releasePorts() {
	for _, h := range m.holds {
		h.Release()
	}
	m.holds = nil
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

func (m *member) waitHealthy(timeout time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(m.client + "/health")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"health":"true"`) {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("etcd member %s not healthy after %s", m.name, timeout)
}

func (c *cluster) stop() {
	for _, m := range c.members {
		m.kill()
		m.mu.Lock()
		m.releasePorts()
		m.mu.Unlock()
		m.log.Close()
	}
}

// leader is the member that leads now, or nil.
func (c *cluster) leader(ctx context.Context, cli *clientv3.Client) *member {
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.client)
		cancel()
		if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
			return m
		}
	}
	return nil
}

// moveLeader hands the leadership to another running member.
func (c *cluster) moveLeader(ctx context.Context, cli *clientv3.Client) error {
	l := c.leader(ctx, cli)
	if l == nil {
		return fmt.Errorf("no leader")
	}
	for _, m := range c.members {
		if m == l || !m.running() {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cli.Status(sctx, m.client)
		cancel()
		if err != nil {
			continue
		}
		lc, err := clientv3.New(clientv3.Config{Endpoints: []string{l.client}, DialTimeout: time.Second})
		if err != nil {
			return err
		}
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = lc.MoveLeader(mctx, st.Header.MemberId)
		cancel()
		lc.Close()
		return err
	}
	return fmt.Errorf("no other member running")
}

// EtcdMain is the etcd member process (CHAOS_ROLE=etcd).
func EtcdMain() int {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = os.Getenv("CHAOS_ETCD_NAME"), os.Getenv("CHAOS_ETCD_DIR")
	cu, err1 := url.Parse(os.Getenv("CHAOS_ETCD_CLIENT"))
	pu, err2 := url.Parse(os.Getenv("CHAOS_ETCD_PEER"))
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "etcd: bad urls")
		return 2
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = os.Getenv("CHAOS_ETCD_INITIAL")
	cfg.InitialClusterToken = "berth-chaos"
	// Fast elections, as on a LAN (a leader change takes about a second).
	cfg.TickMs, cfg.ElectionMs = 100, 1000
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		return 1
	}
	<-e.Server.ReadyNotify()
	err = <-e.Err()
	fmt.Fprintln(os.Stderr, "etcd stopped:", err)
	return 1
}
