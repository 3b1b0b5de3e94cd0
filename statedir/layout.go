package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/jobs"
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
// into the directory of the env they belong to (Adopt) when the
// agent starts. A later single-env config for that env reads them from
// there.

// envFiles are an env's own entries in its state directory. The journal
// goes last when they move: it tells which env the files belong to, so a
// move interrupted by a crash is finished by the next start.
var envFiles = []string{"state.json", "request.json", "migrations.json", "jobs", "deploys"}

// EnvDir is where env's state lives, in the state dir root of an agent
// that runs names.
func EnvDir(root string, names []string, env string) string {
	own := filepath.Join(root, "envs", env)
	if _, err := os.Stat(own); err == nil {
		return own
	}
	if len(names) > 1 {
		// Before the agent adopted it (the config changed, the agent has
		// not restarted yet), the CLI reads an env's state where it is.
		if owner, _ := legacyOwner(root); owner != env {
			return own
		}
	}
	return root
}

// Journal is the journal in an env's directory.
func Journal(envDir string) *reconcile.Journal {
	return &reconcile.Journal{Dir: filepath.Join(envDir, "deploys")}
}

// Jobs is the job store in an env's directory.
func Jobs(envDir string) *jobs.Store {
	return &jobs.Store{Dir: filepath.Join(envDir, "jobs")}
}

// Migrations is the migrations ledger in an env's directory.
func Migrations(envDir string) string {
	return filepath.Join(envDir, "migrations.json")
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

// Adopt moves the single-env files in STATE_DIR into the
// directory of the env they belong to, when the agent runs several envs
// and that env is one of them. Each entry moves with one rename, so a
// crash leaves every file whole on one side; the next start moves the
// rest. An entry present on both sides is left where it is (and logged):
// berth never overwrites state.
func Adopt(root string, names []string, log hclog.Logger) error {
	if len(names) < 2 {
		return nil
	}
	owner, err := legacyOwner(root)
	if err != nil {
		return err
	}
	present := false
	for _, f := range envFiles {
		if _, err := os.Lstat(filepath.Join(root, f)); err == nil {
			present = true
		}
	}
	if !present {
		return nil
	}
	if owner == "" {
		log.Warn("state of a single-env agent found in the state dir, but no journal record names its env: left where it is", "state_dir", root)
		return nil
	}
	if !slices.Contains(names, owner) {
		log.Warn("state of a single-env agent found in the state dir for an env this agent does not run: left where it is", "state_dir", root, "env", owner)
		return nil
	}
	dst := filepath.Join(root, "envs", owner)
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, f := range envFiles {
		from, to := filepath.Join(root, f), filepath.Join(dst, f)
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
	if d, err := os.Open(root); err == nil {
		d.Sync()
		d.Close()
	}
	log.Info("single-env state moved into the env's own directory", "env", owner, "dir", dst)
	return nil
}
