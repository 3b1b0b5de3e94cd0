package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"berth.dev/berth/internal/failure"
)

// ErrSessionLost reports that the agent's etcd session (its lease) ended
// while a coordinated step was waiting: whatever it held is gone. It is an
// outage; the next call starts a new session.
var ErrSessionLost = errors.New("etcd session lost (lease expired or etcd unreachable)")

var errClosed = errors.New("fleet client closed")

// Options are the parts of a Client that are not configuration.
type Options struct {
	Log hclog.Logger
	// Now is the wall clock (default time.Now). Scheduled times and the
	// published clock use it; tests skew it.
	Now func() time.Time
	// SeenInterval is how often the permanent last-seen record is
	// rewritten (default 10 min).
	SeenInterval time.Duration
	// KeepRollouts, KeepMigrations and RemovedJobGrace bound what etcd
	// keeps (prune.go; defaults 10, 100 and 8 days).
	KeepRollouts    int
	KeepMigrations  int
	RemovedJobGrace time.Duration
	// OnSession, if set, is called when a session starts (started) and
	// when this client notices it ended (its Done fired): for metrics,
	// and for the fault harness's ledger.
	OnSession func(lease int64, started bool)
}

// Client is one agent's connection to the fleet: one etcd client, and one
// session (lease) at a time, replaced when it dies. It is safe for
// concurrent use.
type Client struct {
	cfg  Config
	ecfg clientv3.Config
	log  hclog.Logger
	now  func() time.Time
	opts Options

	ctx    context.Context // lives until Close
	cancel context.CancelFunc

	mu      sync.Mutex
	etcd    *clientv3.Client // nil until the first successful dial
	sess    *concurrency.Session
	sessGen chan struct{} // closed when a new session replaces the old one
	closed  bool

	// fault, set by tests only, fails a call before it is sent
	// (committed false) or loses its reply after etcd applied it
	// (committed true), as a cut connection or a timeout would.
	fault atomic.Pointer[func(what string, committed bool) error]
	// trace, set by the benchmark only, is told each step of an Admit.
	trace atomic.Pointer[func(step string)]

	down      atomic.Bool  // the last call found etcd unreachable
	lastHeard atomic.Int64 // when etcd last answered (unix ns; reach.go)
	seq       atomic.Int64
	skew      atomic.Int64 // the offset of our clock from etcd's last published, ns
	eclock    etcdClock
	aheadWarn atomic.Int64 // when a claim was last refused for a clock ahead (unix s)
	out       outbox
	claims    pendingClaims
	epochs    sync.Map // env → the rollout epoch last read (a guess for the next Admit)
	pub       publisher
	kickc     chan struct{}
}

// New makes a client. It does not wait for etcd: an agent must start and
// serve while etcd is down. Coordinated calls then fail as outages until
// etcd answers.
func New(cfg Config, opts Options) (*Client, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	pw, err := cfg.password()
	if err != nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SeenInterval <= 0 {
		opts.SeenInterval = 10 * time.Minute
	}
	if opts.KeepRollouts <= 0 {
		opts.KeepRollouts = defaultKeepRollouts
	}
	if opts.KeepMigrations <= 0 {
		opts.KeepMigrations = defaultKeepMigrations
	}
	if opts.RemovedJobGrace <= 0 {
		opts.RemovedJobGrace = defaultRemovedJobGrace
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		cfg: cfg,
		ecfg: clientv3.Config{
			Endpoints:   cfg.Etcd.Endpoints,
			DialTimeout: cfg.Timeout,
			// gRPC pings notice a dead connection (a partitioned member)
			// so the balancer moves to another endpoint. etcd refuses
			// pings closer than 5 s apart.
			DialKeepAliveTime:    10 * time.Second,
			DialKeepAliveTimeout: cfg.Timeout,
			TLS:                  tlsCfg,
			Username:             cfg.Etcd.Username,
			Password:             pw,
			Logger:               zap.NewNop(),
			Context:              ctx,
			// gRPC's reconnect backoff grows to two minutes by default:
			// after a long etcd outage an agent would stay away that
			// long. Retry the connection at least every 2 s instead.
			DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: cfg.Timeout,
			})},
		},
		log:     opts.Log.Named("fleet").With("host", cfg.Host),
		now:     opts.Now,
		opts:    opts,
		ctx:     ctx,
		cancel:  cancel,
		sessGen: make(chan struct{}),
		kickc:   make(chan struct{}, 1),
	}
	c.pub.init()
	return c, nil
}

// epochSeen is the rollout epoch of env this client read last (0 before).
func (c *Client) epochSeen(env string) int64 {
	if v, ok := c.epochs.Load(env); ok {
		return v.(int64)
	}
	return 0
}

// step tells the benchmark's trace that an Admit reached step.
func (c *Client) step(name string) {
	if f := c.trace.Load(); f != nil {
		(*f)(name)
	}
}

// Host is this agent's name in the fleet.
func (c *Client) Host() string { return c.cfg.Host }

// Config is the defaulted configuration.
func (c *Client) Config() Config { return c.cfg }

// client returns the etcd client, dialing it the first time. With
// username/password auth, dialing logs in, which needs etcd up.
func (c *Client) client() (*clientv3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clientLocked()
}

func (c *Client) clientLocked() (*clientv3.Client, error) {
	if c.etcd != nil {
		return c.etcd, nil
	}
	if c.closed {
		return nil, errClosed
	}
	cli, err := clientv3.New(c.ecfg)
	if err != nil {
		return nil, failure.AsOutage(fmt.Errorf("connect to etcd: %w", err))
	}
	c.etcd = cli
	return cli, nil
}

// Session returns the agent's live session, making a new one when there
// is none or the last one's Done fired: a dead session is dead for good,
// and every key it held is gone (or about to be).
func (c *Client) Session(ctx context.Context) (*concurrency.Session, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if s := c.sess; s != nil {
		select {
		case <-s.Done():
		default:
			return s, nil
		}
	}
	cli, err := c.clientLocked()
	if err != nil {
		return nil, err
	}
	ttl := int64((c.cfg.LeaseTTL + time.Second - 1) / time.Second)
	id, err := c.keptLease(ctx, cli)
	if err != nil {
		return nil, err
	}
	kept := id != clientv3.NoLease
	if !kept {
		tctx, cancel := c.timeout(ctx)
		g, err := cli.Grant(tctx, ttl)
		cancel()
		if err != nil {
			return nil, c.fail(ctx, "grant lease", err)
		}
		id = g.ID
	}
	// The session's context is the client's, not the caller's: the
	// keepalive must outlive this call.
	s, err := concurrency.NewSession(cli, concurrency.WithLease(id), concurrency.WithTTL(int(ttl)), concurrency.WithContext(c.ctx))
	if err != nil {
		return nil, c.fail(ctx, "keep lease alive", err)
	}
	switch {
	case kept:
		c.log.Info("etcd session resumed: its lease outlived the outage, and everything it held is still held", "lease", fmt.Sprintf("%x", s.Lease()))
	case c.sess != nil:
		c.log.Info("etcd session replaced: the old lease is gone, and what it held with it", "lease", fmt.Sprintf("%x", s.Lease()))
	default:
		c.log.Info("etcd session started", "lease", fmt.Sprintf("%x", s.Lease()))
	}
	c.sess = s
	c.hearKeepAlives(cli, s)
	if hook := c.opts.OnSession; hook != nil {
		hook(int64(s.Lease()), true)
		go func() { <-s.Done(); hook(int64(s.Lease()), false) }()
	}
	close(c.sessGen)
	c.sessGen = make(chan struct{})
	c.kick()
	return s, nil
}

// keptLease returns the last session's lease if etcd still has it (or
// NoLease if it is gone, or there was none). A session's Done fires when
// the client heard nothing for a TTL — during an etcd outage, say — but
// etcd restores every lease with a fresh TTL when it comes back. Such a
// lease is kept alive again, not replaced: its locks, slots, job marks and
// host record stay, and a result waiting in the outbox is written before
// anyone could read them as abandoned.
func (c *Client) keptLease(ctx context.Context, cli *clientv3.Client) (clientv3.LeaseID, error) {
	old := c.sess
	if old == nil {
		return clientv3.NoLease, nil
	}
	tctx, cancel := c.timeout(ctx)
	ka, err := cli.KeepAliveOnce(tctx, old.Lease())
	cancel()
	switch {
	case err == nil && ka.TTL > 0:
		return old.Lease(), nil
	case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
		return clientv3.NoLease, nil
	}
	return clientv3.NoLease, c.fail(ctx, "keep lease alive", err)
}

// sessionChanged returns a channel closed when the next session starts.
func (c *Client) sessionChanged() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessGen
}

// current returns the live session, if any, without making one.
func (c *Client) current() *concurrency.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.sess; s != nil {
		select {
		case <-s.Done():
		default:
			return s
		}
	}
	return nil
}

// Close stops the client: queued results get one last chance, the
// session's lease is revoked (its slots, locks and host key go at once),
// and the connection closes.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	fctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	if err := c.Flush(fctx); err != nil {
		c.log.Warn("etcd results not written before close", "error", err)
	}
	cancel()
	c.mu.Lock()
	s, cli := c.sess, c.etcd
	c.sess = nil
	c.mu.Unlock()
	if s != nil && cli != nil {
		s.Orphan()
		rctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		_, _ = cli.Revoke(rctx, s.Lease())
		cancel()
	}
	c.cancel()
	if cli != nil {
		return cli.Close()
	}
	return nil
}

// kick wakes the background loop (publish, flush).
func (c *Client) kick() {
	select {
	case c.kickc <- struct{}{}:
	default:
	}
}

// token is a process-unique suffix for keys one session may hold several
// of.
func (c *Client) token() int64 { return c.seq.Add(1) }
