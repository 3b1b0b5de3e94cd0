package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"berth.dev/berth/fleet"
)

// Config is one run of the harness.
type Config struct {
	Seed int64
	// Duration is how long the nemesis injects faults; the run then
	// heals everything, commits a last revision and waits (within a
	// bound) for the fleet to converge on it.
	Duration   time.Duration
	Agents     int // at start (default 5)
	MaxJoiners int // hosts that may join mid-rollout (default 2)
	TTL        time.Duration
	Timeout    time.Duration
	// MaxParallel is every revision's max_parallel (a number of hosts).
	MaxParallel int
	// KeepRollouts and KeepMigrations are the windows the fleet keeps
	// (the key budget is computed from them).
	KeepRollouts   int
	KeepMigrations int
	// Dir is the run directory (default a temp dir, removed unless Keep
	// or a violation).
	Dir  string
	Keep bool
	Out  io.Writer
	// Bin is this program (agents and etcd members are its children).
	Bin string
}

func (c Config) defaults() Config {
	if c.Agents == 0 {
		c.Agents = 5
	}
	if c.MaxJoiners == 0 {
		c.MaxJoiners = 2
	}
	if c.TTL == 0 {
		c.TTL = 3 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.MaxParallel == 0 {
		c.MaxParallel = 2
	}
	if c.KeepRollouts == 0 {
		c.KeepRollouts = 4
	}
	if c.KeepMigrations == 0 {
		c.KeepMigrations = 4
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	return c
}

// Harness is one run.
type Harness struct {
	cfg   Config
	dir   string
	bin   string
	out   io.Writer
	began time.Time
	led   *Ledger
	cl    *cluster
	mon   *clientv3.Client // the checker's own view of etcd
	op    *fleet.Client    // the operator's berth CLI
	work  *workload
	jobs  []JobSpec

	mu     sync.Mutex
	agents []*agentProc
}

func (h *Harness) say(format string, args ...any) {
	fmt.Fprintf(h.out, "%7.1fs  %s\n", time.Since(h.began).Seconds(), fmt.Sprintf(format, args...))
}

// Run runs the harness and checks the result.
func Run(cfg Config) (*Report, error) {
	cfg = cfg.defaults()
	h := &Harness{cfg: cfg, bin: cfg.Bin, out: cfg.Out, began: time.Now()}
	h.dir = cfg.Dir
	if h.dir == "" {
		d, err := os.MkdirTemp("", "chaos-fleet-")
		if err != nil {
			return nil, err
		}
		h.dir = d
	}
	for _, sub := range []string{"revs", "state", "logs", "ledger"} {
		if err := os.MkdirAll(filepath.Join(h.dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	led, err := OpenLedger(ledgerDir(h.dir), "harness")
	if err != nil {
		return nil, err
	}
	h.led = led
	defer led.Close()
	h.say("seed %d, %s of faults, %d agents (+%d joiners), lease TTL %s, call timeout %s, max_parallel %d; run dir %s",
		cfg.Seed, cfg.Duration, cfg.Agents, cfg.MaxJoiners, cfg.TTL, cfg.Timeout, cfg.MaxParallel, h.dir)
	if h.cl, err = startCluster(h.bin, h.dir, 3); err != nil {
		return nil, err
	}
	defer h.cl.stop()
	if h.mon, err = clientv3.New(clientv3.Config{Endpoints: h.cl.endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()}); err != nil {
		return nil, err
	}
	defer h.mon.Close()
	if h.op, err = fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: h.cl.endpoints()}, Host: "operator", LeaseTTL: cfg.TTL, Timeout: 2 * cfg.Timeout},
		fleet.Options{Log: hclog.NewNullLogger()}); err != nil {
		return nil, err
	}
	defer h.op.Close()
	h.jobs = []JobSpec{
		{Name: "backup", Every: 3 * time.Second, Run: 400 * time.Millisecond, Forbid: true, History: 5},
		{Name: "report", Every: 4 * time.Second, Run: 900 * time.Millisecond, History: 5},
		{Name: "sweep", Every: 5 * time.Second, Run: 300 * time.Millisecond, Forbid: true, History: 5},
	}
	if err := writeJSON(jobsPath(h.dir), h.jobs); err != nil {
		return nil, err
	}
	h.work = &workload{h: h, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 2))}
	h.work.commit(h.work.revision(true), "first")
	for i := range cfg.Agents {
		if _, err := h.addAgent(fmt.Sprintf("web-%d", i+1)); err != nil {
			return nil, err
		}
	}
	defer h.stopAgents()
	if _, err := h.converge(h.work.headRev(), 60*time.Second); err != nil {
		return nil, fmt.Errorf("the fleet did not come up: %w", err)
	}
	h.say("%d agents live on %s; faults begin", cfg.Agents, h.work.headRev())
	h.led.Write(Event{Kind: "faults_begin"})

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); h.work.run(ctx) }()
	go func() { defer wg.Done(); h.clock(ctx) }()
	go func() {
		defer wg.Done()
		(&nemesis{h: h, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 1))}).run(ctx)
	}()
	wg.Wait()
	h.led.Write(Event{Kind: "faults_end"})
	h.say("faults end; every fault healed")

	final := h.work.revision(true)
	final.Migrations, final.Deploy = nil, 300*time.Millisecond
	h.work.commit(final, "final")
	bound := h.convergeBound()
	took, cerr := h.converge(final.Name, bound)
	if cerr == nil {
		h.say("converged on %s in %.1fs (bound %s)", final.Name, took.Seconds(), bound)
	} else {
		h.say("NOT converged on %s within %s: %v", final.Name, bound, cerr)
	}
	h.led.Write(Event{Kind: "converged", Rev: final.Name, OK: cerr == nil, Dur: int64(took)})
	return h.check(final.Name, cerr)
}

// convergeBound is how long the fleet may take to go live on a last,
// plain revision once every fault has healed: sessions come back (a TTL
// or two), then a canary and waves of max_parallel.
func (h *Harness) convergeBound() time.Duration {
	n := len(h.agentList())
	waves := (n+h.cfg.MaxParallel-1)/h.cfg.MaxParallel + 1
	return 3*h.cfg.TTL + 10*time.Second + time.Duration(waves)*2*time.Second
}

func (h *Harness) addAgent(host string) (*agentProc, error) {
	ap, err := h.newAgent(host)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.agents = append(h.agents, ap)
	h.mu.Unlock()
	return ap, nil
}

func (h *Harness) agentList() []*agentProc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*agentProc(nil), h.agents...)
}

func (h *Harness) pickAgent(rng *rand.Rand, busy map[string]bool) *agentProc {
	var free []*agentProc
	for _, ap := range h.agentList() {
		if !busy[ap.host] && ap.alive() {
			free = append(free, ap)
		}
	}
	if len(free) == 0 {
		return nil
	}
	return free[rng.IntN(len(free))]
}

func (h *Harness) join() string {
	host := fmt.Sprintf("web-%d", len(h.agentList())+1)
	if _, err := h.addAgent(host); err != nil {
		return err.Error()
	}
	return host + " joined"
}

func (h *Harness) stopAgents() {
	var wg sync.WaitGroup
	for _, ap := range h.agentList() {
		wg.Add(1)
		go func() { defer wg.Done(); ap.term(); ap.px.close(); ap.log.Close() }()
	}
	wg.Wait()
}

// converge waits until every agent is live on rev (its host record in
// etcd says so).
func (h *Harness) converge(rev string, bound time.Duration) (time.Duration, error) {
	start := time.Now()
	var last string
	for time.Since(start) < bound {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		hosts, err := h.op.List(ctx, Env)
		cancel()
		if err == nil {
			live := map[string]bool{}
			for _, hs := range hosts {
				live[hs.Host] = hs.Alive && hs.Live != nil && hs.Live.Revision == rev
			}
			ok := true
			last = ""
			for _, ap := range h.agentList() {
				if !live[ap.host] {
					ok = false
					last += " " + ap.host
				}
			}
			if ok {
				return time.Since(start), nil
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("not live on %s:%s", rev, last)
}

// restartMembers starts the members again and waits until they serve.
func (h *Harness) restartMembers(ms ...*member) string {
	for _, m := range ms {
		if err := h.cl.start(m); err != nil {
			return err.Error()
		}
	}
	for _, m := range ms {
		if err := m.waitHealthy(60 * time.Second); err != nil {
			return err.Error()
		}
	}
	return ""
}

// changeLeader moves the leadership, or restarts the leader.
func (h *Harness) changeLeader(ctx context.Context, restart bool) string {
	if !restart {
		if err := h.cl.moveLeader(context.WithoutCancel(ctx), h.mon); err != nil {
			return "move leader: " + err.Error()
		}
		return "moved"
	}
	l := h.cl.leader(context.WithoutCancel(ctx), h.mon)
	if l == nil {
		return "no leader"
	}
	l.kill()
	time.Sleep(time.Second)
	return "restarted " + l.name + " " + h.restartMembers(l)
}

// clock writes etcd's revision to the ledger twice a second: the
// checker's map from etcd revisions (in the history) to times.
func (h *Harness) clock(ctx context.Context) {
	for ctx.Err() == nil {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := h.mon.Get(gctx, "/berth/clock", clientv3.WithCountOnly())
		cancel()
		if err == nil {
			h.led.Write(Event{Kind: "etcd_rev", Token: resp.Header.Revision})
		}
		sleepCtx(ctx, 500*time.Millisecond)
	}
}
