package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
)

// agent is one simulated berth agent: the real fleet client, a pass loop
// that follows the head as reconcile does (gate, admit, migrations,
// deploy, finish), and the job scheduler's claim loop for each job.
type agent struct {
	host string
	dir  string
	c    *fleet.Client
	led  *Ledger
	log  hclog.Logger
	off  atomic.Int64    // the clock offset the nemesis set, ns
	ctx  context.Context // done once the agent stops

	mu sync.Mutex
	st agentState
}

// AgentMain is the agent process (CHAOS_ROLE=agent). Its configuration
// comes from the environment: CHAOS_HOST, CHAOS_DIR, CHAOS_EPS (its
// proxy's addresses), CHAOS_TTL, CHAOS_TIMEOUT. It reads clock offsets
// from stdin ({"clock": ns} lines) and stops on SIGTERM.
func AgentMain() int {
	a := &agent{host: os.Getenv("CHAOS_HOST"), dir: os.Getenv("CHAOS_DIR")}
	a.log = hclog.New(&hclog.LoggerOptions{Name: a.host, Output: os.Stderr, Level: hclog.Info, TimeFormat: "15:04:05.000"})
	ttl, _ := time.ParseDuration(os.Getenv("CHAOS_TTL"))
	timeout, _ := time.ParseDuration(os.Getenv("CHAOS_TIMEOUT"))
	led, err := OpenLedger(ledgerDir(a.dir), a.host)
	if err != nil {
		a.log.Error("ledger", "error", err)
		return 2
	}
	a.led = led
	_ = readJSON(statePath(a.dir, a.host), &a.st)
	var keepR, keepM int
	_, _ = fmt.Sscanf(os.Getenv("CHAOS_KEEP"), "%d,%d", &keepR, &keepM)
	c, err := fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: strings.Split(os.Getenv("CHAOS_EPS"), ",")},
		Host: a.host, LeaseTTL: ttl, Timeout: timeout},
		fleet.Options{Log: a.log, Now: a.now, OnSession: a.onSession, KeepRollouts: keepR, KeepMigrations: keepM})
	if err != nil {
		a.log.Error("fleet client", "error", err)
		return 2
	}
	a.c = c
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	a.ctx = ctx
	led.Write(Event{Kind: "start", Rev: a.st.Live})
	go c.Run(ctx)
	go a.commands()
	a.publish("")
	var jobs []JobSpec
	if err := readJSON(jobsPath(a.dir), &jobs); err != nil {
		a.log.Error("jobs", "error", err)
		return 2
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() { defer wg.Done(); a.jobLoop(ctx, j) }()
	}
	for ctx.Err() == nil {
		if !sleepCtx(ctx, a.pass(ctx)) {
			break
		}
	}
	wg.Wait()
	_ = c.Close()
	led.Write(Event{Kind: "stop"})
	return 0
}

// now is the agent's wall clock, offset by the nemesis.
func (a *agent) now() time.Time { return time.Now().Add(time.Duration(a.off.Load())) }

func (a *agent) onSession(lease int64, started bool) {
	kind := "session"
	switch {
	case started:
	case a.ctx != nil && a.ctx.Err() != nil:
		kind = "session_end" // the agent stopping closes it: no loss
	default:
		kind = "session_lost"
	}
	a.led.Write(Event{Kind: kind, Lease: strconv.FormatInt(lease, 16)})
}

// commands reads the nemesis's clock offsets from stdin.
func (a *agent) commands() {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var cmd struct {
			Clock int64 `json:"clock"`
		}
		if json.Unmarshal(sc.Bytes(), &cmd) == nil {
			a.off.Store(cmd.Clock)
			a.log.Info("clock offset set", "offset", time.Duration(cmd.Clock))
		}
	}
}

func (a *agent) save() {
	if err := writeJSON(statePath(a.dir, a.host), a.st); err != nil {
		a.log.Error("save state", "error", err)
	}
}

func (a *agent) publish(waiting string) {
	st := fleet.HostState{Failed: a.st.Failed, Held: a.st.Held, Waiting: waiting, Version: "chaos"}
	if a.st.Live != "" {
		st.Live = &fleet.Commit{Revision: a.st.Live}
	}
	a.c.Publish(Env, st)
}

// pass is one pass of the env, as reconcile's gate and admit do it, and
// returns how long to wait before the next.
func (a *agent) pass(ctx context.Context) time.Duration {
	const idle, outage = 250 * time.Millisecond, time.Second
	var h head
	if err := readJSON(headPath(a.dir), &h); err != nil || h.Rev == "" {
		return idle
	}
	ctl, err := a.c.Control(ctx, Env)
	if err != nil {
		return outage
	}
	if ctl.Retry != a.st.Retry {
		if a.st.Retry != 0 && (a.st.Failed != "" || a.st.Held != "") {
			a.log.Info("fleet retry: failed and held marks forgotten")
			a.st.Failed, a.st.Held = "", ""
		}
		a.st.Retry = ctl.Retry
		a.save()
		a.publish("")
	}
	if a.st.Held != "" && a.st.Held != h.Rev {
		a.st.Held = ""
		a.save()
		a.publish("")
	}
	target := h.Rev
	switch {
	case ctl.Rollback != nil && ctl.Rollback.Head == h.Rev:
		target = ctl.Rollback.Commit
	case a.st.Held == h.Rev:
		return idle
	}
	if target == a.st.Live || target == a.st.Failed {
		return idle
	}
	return a.deploy(ctx, target)
}

func (a *agent) loadRev(name string) (*Revision, error) {
	var r Revision
	if err := readJSON(revPath(a.dir, name), &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// deploy asks the fleet for a turn, runs the revision's migrations and
// deploy, and finishes the admission with the outcome.
func (a *agent) deploy(ctx context.Context, target string) time.Duration {
	rev, err := a.loadRev(target)
	if err != nil {
		a.log.Error("load revision", "rev", target, "error", err)
		return time.Second
	}
	req := fleet.RolloutRequest{Revision: target, Live: a.st.Live, Waiting: a.publish,
		Policy: fleet.Policy{Canary: rev.Canary, Pause: rev.Pause}}
	if rev.MaxParallel > 0 {
		req.Policy.MaxParallel = strconv.Itoa(rev.MaxParallel)
	}
	adm, err := a.c.Admit(ctx, Env, req)
	var halted *fleet.HaltedError
	switch {
	case errors.As(err, &halted):
		a.st.Held = target
		a.save()
		a.publish("")
		a.led.Write(Event{Kind: "held", Rev: target, Note: halted.Error()})
		return 250 * time.Millisecond
	case err != nil && (failure.IsOutage(err) || ctx.Err() != nil):
		return time.Second
	case err != nil:
		a.st.Failed = target
		a.save()
		a.publish("")
		a.led.Write(Event{Kind: "refused", Rev: target, Note: err.Error()})
		return 250 * time.Millisecond
	}
	if adm.Revision != target {
		if rev, err = a.loadRev(adm.Revision); err != nil {
			_ = adm.Finish(context.WithoutCancel(ctx), fleet.Abandoned, err.Error())
			return time.Second
		}
	}
	a.led.Write(Event{Kind: "deploy_start", Rev: adm.Revision, Slot: adm.Slot, Canary: adm.Canary, Joining: adm.Joining, AdmRev: adm.At})
	end := Event{Kind: "deploy_end", Rev: adm.Revision}
	o, reason := a.run(ctx, rev, &end)
	end.Outcome, end.Note = [...]string{"succeeded", "failed", "abandoned"}[o], reason
	a.led.Write(end)
	if err := adm.Finish(context.WithoutCancel(ctx), o, reason); err != nil {
		a.log.Warn("finish", "error", err)
	}
	switch o {
	case fleet.Succeeded:
		a.st.Live = adm.Revision
		a.save()
		a.led.Write(Event{Kind: "live", Rev: adm.Revision})
	case fleet.Failed:
		if adm.Revision == target {
			a.st.Failed = target
			a.save()
		}
	case fleet.Abandoned:
		return time.Second
	}
	a.publish("")
	return 0
}

// run runs the revision's migrations, then its deploy. end gets the
// migration that refused the revision, if one did.
func (a *agent) run(ctx context.Context, rev *Revision, end *Event) (fleet.Outcome, string) {
	for _, m := range rev.Migrations {
		mig := fleet.Migration{Service: m.Service, Image: m.Image, Command: []string{"migrate"}, Idempotent: m.Idempotent, Revision: rev.Name}
		_, err := a.c.Migrate(ctx, Env, mig, func(_ context.Context, token int64) error {
			a.led.Write(Event{Kind: "migrate_start", Mig: mig.ID(), Token: token, Idem: m.Idempotent, Rev: rev.Name})
			time.Sleep(m.Run) // a migration runs to its end, shutdown or not
			a.led.Write(Event{Kind: "migrate_end", Mig: mig.ID(), Token: token, OK: !m.Fail, Rev: rev.Name})
			if m.Fail {
				return failure.AsVerdict(errors.New("migration exited with status 1"))
			}
			return nil
		})
		var me *fleet.MigrationError
		switch {
		case errors.As(err, &me):
			end.Mig, end.Token = me.State.ID, me.State.Token
			return fleet.Failed, err.Error()
		case err != nil && failure.IsVerdict(err) && ctx.Err() == nil:
			return fleet.Failed, err.Error()
		case err != nil:
			return fleet.Abandoned, err.Error()
		}
	}
	if !sleepCtx(ctx, rev.Deploy) {
		return fleet.Abandoned, "stopped"
	}
	if rev.FailDeploy {
		return fleet.Failed, fmt.Sprintf("deploy of %s failed: health check", rev.Name)
	}
	return fleet.Succeeded, ""
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	return backoff.Sleep(ctx, max(d, 0)) == nil
}
