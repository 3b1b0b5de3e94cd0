package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The run directory is the harness's "config repo" and the agents'
// disks: revs/<rev>.json are the commits, head names the branch head,
// jobs.json the jobs, ledger/ the ledgers, state/<host>.json each agent's
// own state (it survives a SIGKILL), logs/ the agents' and etcd's logs.

// Env is the one env every agent runs.
const Env = "prod"

// Revision is one commit of the workload's config repo.
type Revision struct {
	Name       string    `json:"name"`
	Migrations []MigSpec `json:"migrations,omitempty"`
	// FailDeploy: the deploy of this revision fails with a verdict on
	// any host (the canary catches it; the revision halts).
	FailDeploy bool          `json:"fail_deploy,omitempty"`
	Deploy     time.Duration `json:"deploy"`
	Canary     int           `json:"canary"`
	// MaxParallel is a number of hosts: one value for the whole run, so
	// that the checker's bound holds whatever revisions share the slots.
	MaxParallel int           `json:"max_parallel"`
	Pause       time.Duration `json:"pause,omitempty"`
}

// MigSpec is a migration of a revision. The same Image in two revisions
// is the same migration (run once per fleet).
type MigSpec struct {
	Service    string        `json:"service"`
	Image      string        `json:"image"`
	Idempotent bool          `json:"idempotent,omitempty"`
	Fail       bool          `json:"fail,omitempty"`
	Run        time.Duration `json:"run"`
}

// JobSpec is a `run_on: one` job, every Every on aligned times.
type JobSpec struct {
	Name   string        `json:"name"`
	Every  time.Duration `json:"every"`
	Run    time.Duration `json:"run"`
	Forbid bool          `json:"forbid,omitempty"` // concurrency: forbid (else allow)
	// History is how many records the fleet keeps (the job's history).
	History int `json:"history"`
}

// agentState is what an agent keeps on its disk (berth's state.json).
type agentState struct {
	Live   string `json:"live,omitempty"`
	Failed string `json:"failed,omitempty"` // failed here: not retried until a new commit or a retry
	Held   string `json:"held,omitempty"`   // halted fleet-wide: kept until the head moves or a retry
	Retry  int64  `json:"retry,omitempty"`  // the fleet's retry generation last seen
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func revPath(dir, rev string) string    { return filepath.Join(dir, "revs", rev+".json") }
func headPath(dir string) string        { return filepath.Join(dir, "head.json") }
func jobsPath(dir string) string        { return filepath.Join(dir, "jobs.json") }
func ledgerDir(dir string) string       { return filepath.Join(dir, "ledger") }
func statePath(dir, host string) string { return filepath.Join(dir, "state", host+".json") }

// head is the branch head file.
type head struct {
	Rev string `json:"rev"`
}
