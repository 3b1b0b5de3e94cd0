package fleet

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"berth.dev/berth/internal/testenv"
	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// embedded is a real single-member etcd (the server this client version
// ships with, v3.7) inside the test process, data in a temp dir. It can
// be stopped and started again on the same ports and data.
type embedded struct {
	t        testing.TB
	cfg      *embed.Config
	mu       sync.Mutex
	e        *embed.Etcd
	Endpoint string
}

func startEmbedded(t testing.TB) *embedded {
	t.Helper()
	if testing.Short() {
		t.Skip("embedded etcd: -short starts no real service")
	}
	cfg := embed.NewConfig()
	cfg.Name = "fleet-test"
	cfg.Dir = t.TempDir()
	cu := mustURL(t, fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	pu := mustURL(t, fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger, cfg.LogLevel, cfg.LogOutputs = "zap", "error", []string{"stderr"}
	cfg.TickMs, cfg.ElectionMs = 50, 500
	cfg.BcryptCost = 4 // logging in with a password is bcrypt, slow under -race on a busy machine
	s := &embedded{t: t, cfg: cfg, Endpoint: cu.String()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the server (again).
func (s *embedded) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		return
	}
	var err error
	for range 50 { // the old listener may linger for a moment
		var e *embed.Etcd
		if e, err = embed.StartEtcd(s.cfg); err == nil {
			select {
			case <-e.Server.ReadyNotify():
				s.e = e
				return
			case <-time.After(30 * time.Second):
				e.Close()
				s.t.Fatalf("embedded etcd not ready after 30 s")
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("start embedded etcd: %v", err)
}

// Stop stops the server; its data stays.
func (s *embedded) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

func mustURL(t testing.TB, s string) url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return *u
}

func freePort(t testing.TB) int { return testenv.FreePort(t) }

// testLog is an hclog logger writing to the test log (when -v) until the
// test ends.
func testLog(t testing.TB, name string) hclog.Logger {
	var out io.Writer = newTlogWriter(t)
	if os.Getenv("FLEET_TEST_QUIET") != "" {
		out = io.Discard
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: out, Level: hclog.Info})
}

func newTlogWriter(t testing.TB) *tlogWriter {
	w := &tlogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return w
}

type tlogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// agent is a simulated berth agent: its own client and session.
type agent struct {
	*Client
	cancel context.CancelFunc
	done   chan struct{}
}

type agentOpt func(*Config, *Options)

func withTTL(d time.Duration) agentOpt     { return func(c *Config, _ *Options) { c.LeaseTTL = d } }
func withTimeout(d time.Duration) agentOpt { return func(c *Config, _ *Options) { c.Timeout = d } }
func withClock(off time.Duration) agentOpt {
	return func(_ *Config, o *Options) { o.Now = func() time.Time { return time.Now().Add(off) } }
}
func withNow(now func() time.Time) agentOpt { return func(_ *Config, o *Options) { o.Now = now } }

// newAgent starts a client for host against endpoints, with Run going,
// and closes it when the test ends.
func newAgent(t testing.TB, endpoints []string, host string, opts ...agentOpt) *agent {
	t.Helper()
	cfg := Config{Etcd: EtcdConfig{Endpoints: endpoints}, Host: host, LeaseTTL: 2 * time.Second, Timeout: time.Second}
	o := Options{Log: testLog(t, host)}
	for _, f := range opts {
		f(&cfg, &o)
	}
	c, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agent{Client: c, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(a.done); c.Run(ctx) }()
	t.Cleanup(a.close)
	return a
}

func (a *agent) close() {
	a.cancel()
	<-a.done
	_ = a.Client.Close()
}

// crash drops the agent without a word to etcd: no revoke, no flush. Its
// lease expires after the TTL, as if the process were killed.
func (a *agent) crash() {
	a.cancel()
	<-a.done
	a.mu.Lock()
	cli := a.etcd
	a.mu.Unlock()
	if cli != nil {
		cli.Close()
	}
}

// raw is a plain etcd client for inspecting keys.
func raw(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond (a state check against etcd) until it holds.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// clientPrefix counts the keys under a prefix.
func clientPrefix() []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithCountOnly()}
}
