package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth.dev/berth/engine"
	"berth.dev/berth/gitsource"
	"berth.dev/berth/reconcile"
)

// runRun is the daemon: poll the config repo and reconcile this host until
// SIGTERM. An in-flight deploy is rolled back on shutdown and the revision
// retried on the next start.
func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("run", "[--config FILE] [--once] [--log-level LEVEL]", stderr)
	once := fs.Bool("once", false, "make one check and exit (exit 1 if it failed)")
	checkOnly := fs.Bool("check-config", false, "validate the config and exit")
	level := fs.String("log-level", "info", "trace, debug, info, warn or error")
	cfg, code, ok := withConfig(fs, args, stderr)
	if !ok {
		return code
	}
	if *checkOnly {
		fmt.Fprintf(stdout, "%s: ok\n", fs.Lookup("config").Value)
		return exitOK
	}
	log := newLogger(stderr, *level) // each env's lines carry its name
	tuneGC()

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		log.Error("create state dir", "error", err)
		return exitFailure
	}
	unlock, pidErr, err := lockStateDir(cfg.StateDir)
	if err != nil {
		log.Error("lock state dir", "error", err)
		return exitFailure
	}
	defer unlock()
	if pidErr != nil {
		// A full state dir must not keep the agent from starting (it
		// reports the outage and goes on once there is space); only the
		// CLI's signal is lost: requests wait for the next poll.
		log.Error("the agent's pid could not be recorded: berth rollback, retry, resume and jobs run take effect at the next poll instead of at once", "error", pidErr)
	}
	if err := adoptLegacyState(cfg, log); err != nil {
		log.Error("state dir: the single-env state could not be moved into its env's directory", "error", err)
		return exitFailure
	}

	dc, err := newDocker(cfg)
	if err != nil {
		log.Error("docker", "error", err)
		return exitFailure
	}
	defer dc.Close()
	src, err := newSource(cfg, filepath.Join(cfg.StateDir, "git"), log)
	if err != nil {
		log.Error("config repo", "error", err)
		return exitConfig
	}
	eng := engine.New(dc, log)
	sec, renewLeases, err := newSecrets(cfg, log)
	if err != nil {
		log.Error("vault", "error", err)
		return exitConfig
	}
	m := newAgentMetrics()
	go renewLeases(ctx)
	notifier := newNotifier(cfg, log)
	nctx, stopNotifier := context.WithCancel(ctx)
	notifierDone := make(chan struct{})
	go func() { defer close(notifierDone); notifier.Run(nctx) }()
	defer func() { stopNotifier(); <-notifierDone }() // deliver what is queued

	fc, err := newFleet(cfg, log)
	if err != nil {
		log.Error("fleet", "error", err)
		return exitConfig
	}
	if fc != nil {
		defer fc.Close()
		fctx, stopFleet := context.WithCancel(ctx)
		fleetDone := make(chan struct{})
		go func() { defer close(fleetDone); fc.Run(fctx) }()
		defer func() { stopFleet(); <-fleetDone }()
		log.Info("fleet: coordinating through etcd", "host", fc.Host(), "endpoints", strings.Join(cfg.Fleet.Etcd.Endpoints, ","), "prefix", cfg.Fleet.Prefix)
	}

	shared := &reconcile.Shared{Source: meteredSource{source{src}, m}, Pruner: eng}
	h := &host{shared: shared, clock: gitsource.NewPoller(cfg.Repo.PollInterval.Duration)}
	wd := newWatchdog(stallTimeout(cfg), log)
	deps := hostDeps{cfg: cfg, eng: eng, secrets: sec, shared: shared, metrics: m, notifier: notifier, wd: wd, fleet: fc, log: log,
		status: func() { sdNotify("STATUS=" + statusLine(cfg, h.envs)) }, pages: newStartupPages(cfg.EnvNames())}
	phased := fc != nil // see h.clock.Phase below
	for _, name := range cfg.EnvNames() {
		e := newEnvRuntime(deps, name)
		h.envs = append(h.envs, e)
		interrupted, err := e.agent.Journal.Recover()
		if st, serr := reconcile.LoadState(e.dir); err != nil || len(interrupted) > 0 || serr != nil || st.Live == nil {
			phased = false
		}
		if err != nil {
			// Not fatal: a full or read-only state dir is an outage the
			// passes report; the records stay "running" until a start can
			// mark them.
			e.log.Error("journal: interrupted deploys not marked", "error", err)
		}
		for _, r := range interrupted {
			e.log.Warn("deploy was interrupted; converging from the containers", "deploy_id", r.ID, "commit", r.Commit, "phase", r.Phase)
		}
		if commits, images, err := e.agent.Kept(); err != nil {
			e.log.Warn("state: what this env keeps could not be read; the other envs' prunes may remove its older working copies", "error", err)
		} else {
			shared.Keep(name, commits, images)
		}
	}
	if phased {
		// A fleet restarted at once (an upgrade, a replaced autoscaling
		// group) must not poll the Git server in lockstep: a host already
		// serving a live revision in every env, with no deploy to finish,
		// polls first at a random point of its first interval (a webhook
		// still polls at once). docs/fleet.md, "Polling the config repo".
		h.clock.Phase = cfg.Repo.PollInterval.Duration
	}
	log.Info("berth started", "version", version, "repo", src.URL(), "branch", cfg.Repo.Branch, "state_dir", cfg.StateDir, "envs", strings.Join(cfg.EnvNames(), ","))
	if *once {
		// One pass of each env, one after the other, on one listing.
		failed := false
		_ = shared.Poll(ctx)
		for _, e := range h.envs {
			if err := e.agent.Check(ctx); err != nil {
				e.log.Error("check failed", "error", err)
				failed = true
			}
		}
		if failed {
			return exitFailure
		}
		return exitOK
	}
	// Jobs follow the live revision, from its local working copy (so cron
	// survives a Git outage); the scheduler first reaps runs a killed agent
	// left.
	var schedWG sync.WaitGroup
	for _, e := range h.envs {
		if err := e.agent.LoadLive(ctx); err != nil {
			e.log.Warn("jobs: load the live revision", "error", err)
		}
		schedWG.Add(1)
		go func() { defer schedWG.Done(); e.sched.Run(ctx) }()
	}

	// SIGUSR1 (sent by `berth jobs run`, `rollback`, `retry`, `resume`):
	// pick up requests now instead of at the next poll.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				for _, e := range h.envs {
					e.sched.TakeRequests()
				}
				h.trigger()
			}
		}
	}()
	for _, e := range h.envs {
		e.sched.TakeRequests()
	}
	if fc != nil {
		watchFleetControl(ctx, fc, h.envs, h.trigger)
	}
	startAPI(ctx, cfg, eng, src, m, h.envs, fc, h.trigger, log)
	go wd.run(ctx, watchdogInterval(), sdNotify)
	sdNotify("READY=1\nSTATUS=" + statusLine(cfg, h.envs))
	// Each pass reports itself (OnPass: journal, metrics, notification,
	// STATUS=); what it returns only sets its env's pace.
	h.run(ctx)
	sdNotify("STOPPING=1\nSTATUS=stopping: waiting for the deploy and job runs in flight")
	schedWG.Wait()
	log.Info("berth stopped")
	return exitOK
}

// stallTimeout is how long a pass may show no progress before the agent
// counts as wedged: deploy.stall_timeout, else the longest single step
// berth may legitimately take (a migration) plus a wide margin (a slow
// pull of a large image).
func stallTimeout(cfg *Config) time.Duration {
	if d := cfg.Deploy.StallTimeout.Duration; d > 0 {
		return d
	}
	return 30*time.Minute + cfg.Deploy.MigrationTimeout.Duration
}

// lockStateDir makes sure one agent runs per state dir. The lock file holds
// the agent's pid, for commands that signal it; pidErr says the pid could
// not be written (the lock is held all the same).
func lockStateDir(dir string) (unlock func(), pidErr, err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, err
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

// signalAgent tells the running agent to pick up requests now. It returns
// false when no agent holds the state dir.
func signalAgent(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false // nobody holds it
	}
	b, _ := io.ReadAll(f)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false
	}
	return syscall.Kill(pid, syscall.SIGUSR1) == nil
}

// tuneGC collects when the heap grows by half of what is live rather than
// doubles (GOGC=50), unless GOGC is set: an idle agent's heap is a few MB
// that barely changes, so the extra collections cost little CPU, and its
// resident memory is what an operator sees of berth (docs/benchmarks.md,
// idle daemon).
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
}
