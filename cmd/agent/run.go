package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

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
	log := newLogger(stderr, *level).With("env", cfg.Env)

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		log.Error("create state dir", "error", err)
		return exitFailure
	}
	unlock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		log.Error("lock state dir", "error", err)
		return exitFailure
	}
	defer unlock()

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
	journal := &reconcile.Journal{Dir: filepath.Join(cfg.StateDir, "deploys")}
	interrupted, err := journal.Recover()
	if err != nil {
		log.Error("journal", "error", err)
		return exitFailure
	}
	for _, r := range interrupted {
		log.Warn("deploy was interrupted; converging from the containers", "deploy_id", r.ID, "commit", r.Commit, "phase", r.Phase)
	}
	eng := engine.New(dc, log)
	sec, err := newSecrets(cfg, log)
	if err != nil {
		log.Error("vault", "error", err)
		return exitConfig
	}
	agent := &reconcile.Agent{
		Pruner:          eng,
		KeepRevisions:   cfg.Deploy.KeepRevisions,
		Journal:         journal,
		HoldUntilResume: cfg.RollbackHold == "resume",
		Source:          source{src},
		Load:            loader(cfg),
		Deployer:        newDeployer(cfg, eng, sec, log),
		StateDir:        cfg.StateDir,
		Log:             log.Named("agent"),
	}
	log.Info("berth started", "version", version, "repo", src.URL(), "branch", cfg.Repo.Branch, "state_dir", cfg.StateDir)
	if *once {
		if err := agent.Check(ctx); err != nil {
			log.Error("check failed", "error", err)
			return exitFailure
		}
		return exitOK
	}
	poller := gitsource.NewPoller(cfg.Repo.PollInterval.Duration)
	poller.Run(ctx, func(ctx context.Context) error {
		err := agent.Check(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("check failed", "error", err)
		}
		return err
	})
	log.Info("berth stopped")
	return exitOK
}

// lockStateDir makes sure one agent runs per state dir.
func lockStateDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another berth agent is running on %s", dir)
	}
	return func() { f.Close() }, nil
}
