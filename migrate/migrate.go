package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/envs"
	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/failure"
)

// OneShot runs a container to completion; *engine.Engine is one (the one
// runner of migrations, cli services and job runs).
type OneShot interface {
	RunOnce(ctx context.Context, req *engine.Request, o engine.OneShot) (*engine.RunResult, error)
}

// Job is one one-shot service of a deploy.
type Job struct {
	Service envs.Service
	Request *engine.Request
	// Secrets are the values injected into the container, redacted from
	// its captured output.
	Secrets []string
}

// Record is what a deploy keeps of one run: how it ended and the tail of
// its output (both streams interleaved), with secret values redacted.
type Record struct {
	Service  string `json:"service"`
	Skipped  string `json:"skipped,omitempty"` // why it did not run
	ExitCode int    `json:"exit_code"`
	TimedOut bool   `json:"timed_out,omitempty"`
	// Interrupted says why the run was stopped before it exited (the
	// agent stopping).
	Interrupted string        `json:"interrupted,omitempty"`
	Duration    time.Duration `json:"duration"`
	Output      string        `json:"output,omitempty"`
	// Bytes of stdout and stderr not kept (only the tail of each is).
	StdoutDropped int64 `json:"stdout_dropped,omitempty"`
	StderrDropped int64 `json:"stderr_dropped,omitempty"`
}

// Runner runs the migrate then cli services of a deploy.
type Runner struct {
	Engine  OneShot
	Timeout time.Duration // per run; default 10 min
	// Grace between a stopped run's stop signal and SIGKILL; 0: the
	// service's stop_grace_period, else 10 s.
	Grace time.Duration
	// Ledger is the file remembering migrations that succeeded, under the
	// state dir.
	Ledger string
	Log    hclog.Logger
	// Fleet, when set, runs each migration once per fleet (fleet.go): the
	// first host to reach it runs it under a lock, the others skip it
	// when it succeeded and refuse the revision when it failed. The local
	// ledger is then not used. Env names the env in the fleet.
	Fleet Fleet
	Env   string

	mu sync.Mutex
}

// Run runs every migrate job, then every cli job, in order, stopping at the
// first that exits non-zero or times out (a verdict on the revision: it
// would do the same again). A migration that succeeded for the same
// (service, image, command) before is not run again. A run stopped because
// ctx ended returns ctx's cause; the engine's errors come back as the
// engine classed them.
func (r *Runner) Run(ctx context.Context, jobs []Job) ([]Record, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	done, err := r.load()
	if err != nil {
		return nil, err
	}
	var recs []Record
	for _, role := range []envs.Role{envs.RoleMigrate, envs.RoleCLI} {
		for _, j := range jobs {
			if j.Service.Berth.Role != role {
				continue
			}
			if role == envs.RoleMigrate && r.Fleet != nil {
				rec, err := r.runFleet(ctx, j, timeout)
				recs = append(recs, rec)
				if err != nil {
					return recs, err
				}
				continue
			}
			key := LedgerKey(j.Service)
			if role == envs.RoleMigrate && slices.Contains(done, key) {
				recs = append(recs, Record{Service: j.Service.Name, Skipped: "succeeded before for this image and command"})
				continue
			}
			res, err := r.Engine.RunOnce(ctx, j.Request, engine.OneShot{Timeout: timeout, Grace: r.Grace, Secrets: j.Secrets})
			if err != nil {
				return recs, fmt.Errorf("%s %s: %w", role, j.Service.Name, err)
			}
			rec := Record{Service: j.Service.Name, ExitCode: res.ExitCode, TimedOut: res.TimedOut, Duration: res.Duration,
				Output: string(res.Output), StdoutDropped: res.StdoutDropped, StderrDropped: res.StderrDropped}
			if res.Stopped != nil {
				rec.Interrupted = res.Stopped.Error()
			}
			recs = append(recs, rec)
			switch {
			case res.Stopped != nil:
				return recs, fmt.Errorf("%s %s: stopped: %w", role, j.Service.Name, res.Stopped)
			case res.TimedOut:
				return recs, failure.AsVerdict(fmt.Errorf("%s %s: timed out after %s", role, j.Service.Name, timeout))
			case res.ExitCode != 0:
				return recs, failure.AsVerdict(fmt.Errorf("%s %s: exited with code %d", role, j.Service.Name, res.ExitCode))
			}
			if role == envs.RoleMigrate {
				done = append(done, key)
				if err := r.save(done); err != nil {
					return recs, err
				}
			}
		}
	}
	return recs, nil
}

// LedgerKey identifies a migration: service, image (with digest) and
// command.
func LedgerKey(s envs.Service) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s", s.Name, s.Config.Image, strings.Join(s.Config.Entrypoint, "\x01"), strings.Join(s.Config.Command, "\x01"))
	return hex.EncodeToString(h.Sum(nil))
}

func (r *Runner) load() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Ledger == "" {
		return nil, nil
	}
	b, err := os.ReadFile(r.Ledger)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read migration ledger: %w", err)
	}
	var keys []string
	if err := json.Unmarshal(b, &keys); err != nil {
		return nil, fmt.Errorf("read migration ledger %s: %w", r.Ledger, err)
	}
	return keys, nil
}

// save keeps the most recent 1000 keys: enough for any rollback window.
func (r *Runner) save(keys []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Ledger == "" {
		return nil
	}
	if len(keys) > 1000 {
		keys = keys[len(keys)-1000:]
	}
	b, _ := json.Marshal(keys)
	return atomicfile.WriteFile(r.Ledger, b, 0o600)
}
