package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/reconcile"
)

// The state dir's layout (docs/operations.md, "State dir"):
//
//	STATE_DIR/lock               one agent per state dir; holds its pid
//	STATE_DIR/git/               the config repo: one object store and the
//	                             working copies, shared by every env
//	STATE_DIR/envs/ENV/          one env's own state:
//	    state.json, request.json, deploys/ (the journal),
//	    migrations.json, jobs/
//
// An agent that runs one env keeps that env's files directly in STATE_DIR,
// as berth did before it ran several: an upgrade finds the live revision
// where it was, and a downgrade too. When envs: lists several, each has
// its own directory, and the files of the single-env layout are moved
// into the directory of the env they belong to (adoptLegacyState) when the
// agent starts. A later single-env config for that env reads them from
// there.

// envFiles are an env's own entries in its state directory. The journal
// goes last when they move: it tells which env the files belong to, so a
// move interrupted by a crash is finished by the next start.
var envFiles = []string{"state.json", "request.json", "migrations.json", "jobs", "deploys"}

// envDir is where env's state lives.
func (c *Config) envDir(env string) string {
	own := filepath.Join(c.StateDir, "envs", env)
	if _, err := os.Stat(own); err == nil {
		return own
	}
	if len(c.EnvNames()) > 1 {
		// Before the agent adopted it (the config changed, the agent has
		// not restarted yet), the CLI reads an env's state where it is.
		if owner, _ := legacyOwner(c.StateDir); owner != env {
			return own
		}
	}
	return c.StateDir
}

// journalOf is env's journal.
func (c *Config) journalOf(env string) *reconcile.Journal {
	return &reconcile.Journal{Dir: filepath.Join(c.envDir(env), "deploys")}
}

// legacyOwner names the env whose single-env state is directly in dir:
// the env of the newest journal record that names one, else "" (nothing
// there, or nothing that says).
func legacyOwner(dir string) (string, error) {
	recs, err := (&reconcile.Journal{Dir: filepath.Join(dir, "deploys")}).List()
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		if r.Env != "" {
			return r.Env, nil
		}
	}
	return "", nil
}

// adoptLegacyState moves the single-env files in STATE_DIR into the
// directory of the env they belong to, when the agent runs several envs
// and that env is one of them. Each entry moves with one rename, so a
// crash leaves every file whole on one side; the next start moves the
// rest. An entry present on both sides is left where it is (and logged):
// berth never overwrites state.
func adoptLegacyState(cfg *Config, log hclog.Logger) error {
	names := cfg.EnvNames()
	if len(names) < 2 {
		return nil
	}
	owner, err := legacyOwner(cfg.StateDir)
	if err != nil {
		return err
	}
	present := false
	for _, f := range envFiles {
		if _, err := os.Lstat(filepath.Join(cfg.StateDir, f)); err == nil {
			present = true
		}
	}
	if !present {
		return nil
	}
	if owner == "" {
		log.Warn("state of a single-env agent found in the state dir, but no journal record names its env: left where it is", "state_dir", cfg.StateDir)
		return nil
	}
	if !slices.Contains(names, owner) {
		log.Warn("state of a single-env agent found in the state dir for an env this agent does not run: left where it is", "state_dir", cfg.StateDir, "env", owner)
		return nil
	}
	dst := filepath.Join(cfg.StateDir, "envs", owner)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, f := range envFiles {
		from, to := filepath.Join(cfg.StateDir, f), filepath.Join(dst, f)
		if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if _, err := os.Lstat(to); err == nil {
			log.Warn("single-env state not moved: the env's own directory has this entry already", "env", owner, "entry", f)
			continue
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("move %s into %s: %w", from, dst, err)
		}
	}
	if d, err := os.Open(dst); err == nil {
		d.Sync()
		d.Close()
	}
	if d, err := os.Open(cfg.StateDir); err == nil {
		d.Sync()
		d.Close()
	}
	log.Info("single-env state moved into the env's own directory", "env", owner, "dir", dst)
	return nil
}
