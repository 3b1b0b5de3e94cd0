package reconcile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"berth.dev/berth/internal/failure"
)

// A revision can take the agent down with it where no recover reaches: a
// Git object that inflates to gigabytes, a file compose-go spends minutes
// of CPU on while it ignores ctx, a container that holds a stop until the
// watchdog fires. systemd restarts the agent, which takes the same revision
// again, and dies again. So a pass writes which revision it is on before
// each step that could (fetch, load, deploy), and removes the mark when it
// ends, however it ends; an agent that finds a mark at its first pass
// knows its predecessor died on that revision. After maxDeaths agents in a
// row died on it, the revision is refused as a verdict (berth retry tries
// it again). The mark is not fsynced: it must outlive the process, not the
// host — a power cut is not the revision's doing.

const (
	attemptFile = "attempt.json"
	maxDeaths   = 2
)

// attempt is the mark: the revision a pass is on, in which step, and how
// many agents in a row died on it before.
type attempt struct {
	Commit string    `json:"commit"`
	Stage  Phase     `json:"stage"`
	Deaths int       `json:"deaths,omitempty"`
	At     time.Time `json:"at"`
}

// markAttempt writes the mark before a step of the pass on p.target. A
// mark that cannot be written is logged: it is a safeguard, not a step.
func (a *Agent) markAttempt(p *pass, stage Phase) {
	if a.StateDir == "" || p.target == "" {
		return
	}
	deaths := 0
	if a.died != nil && a.died.Commit == p.target {
		deaths = a.died.Deaths
	}
	b, _ := json.Marshal(attempt{Commit: p.target, Stage: stage, Deaths: deaths, At: time.Now().UTC()})
	path := filepath.Join(a.StateDir, attemptFile)
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, b, 0o600)
	if errors.Is(err, fs.ErrNotExist) { // a new env's first pass: its state dir is made here
		if err = os.MkdirAll(a.StateDir, 0o700); err == nil {
			err = os.WriteFile(tmp, b, 0o600)
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		a.logger().Warn("mark the revision being deployed", "error", err)
	}
}

// clearAttempt removes the mark: the pass ended, the agent did not die on
// it.
func (a *Agent) clearAttempt() {
	if a.StateDir == "" {
		return
	}
	if err := os.Remove(filepath.Join(a.StateDir, attemptFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		a.logger().Warn("remove the mark of the revision being deployed", "error", err)
	}
}

// leftByTheDead reads, at the agent's first pass, the mark a previous agent
// left: it died on that revision. It returns the verdict to record on the
// revision when maxDeaths agents in a row died on it, and remembers the
// count otherwise (the next mark carries it).
func (a *Agent) leftByTheDead(p *pass) error {
	if a.attemptRead || a.StateDir == "" {
		return nil
	}
	a.attemptRead = true
	b, err := os.ReadFile(filepath.Join(a.StateDir, attemptFile))
	if err != nil {
		return nil
	}
	var left attempt
	if json.Unmarshal(b, &left) != nil || left.Commit == "" {
		a.clearAttempt()
		return nil
	}
	left.Deaths++
	log := a.logger().With("commit", short(left.Commit), "phase", left.Stage)
	switch {
	case left.Commit == p.live:
		// The live revision is never marked failed; the caps on what a
		// revision may ask (docs/security.md) are what keep it alive.
		log.Error("the previous agent died while restoring the live revision", "deaths", left.Deaths)
		a.died = nil
	case left.Deaths >= maxDeaths:
		a.clearAttempt()
		a.died = nil
		p.target = left.Commit
		p.stage = left.Stage
		return failure.AsVerdict(fmt.Errorf("the agent died %d times in a row while on %s (in %s: killed for memory or by the watchdog, or crashed): refusing it; `berth retry` tries it again", left.Deaths, short(left.Commit), left.Stage))
	default:
		log.Warn("the previous agent died while on this revision: trying it once more", "deaths", left.Deaths)
		a.died = &left
	}
	return nil
}
