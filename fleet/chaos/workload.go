package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"berth.dev/berth/fleet"
)

// workload is the config repo's history and the operator: a new commit
// every 6–12 s (a migration, new or carried over, idempotent or not,
// sometimes failing; a deploy that sometimes fails), and `berth retry`
// after a halt.
type workload struct {
	h   *Harness
	rng *rand.Rand

	mu         sync.Mutex
	seq, migs  int
	head       string
	lastCommit time.Time
	mig        *MigSpec // the current migration image
	good       []string // revisions that can deploy, in commit order
}

func (w *workload) uniform(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)+1))
}

// revision makes the next commit; plain ones neither fail nor change the
// migration.
func (w *workload) revision(plain bool) Revision {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seq++
	r := Revision{Name: fmt.Sprintf("r%02d", w.seq), Deploy: w.uniform(400*time.Millisecond, 1200*time.Millisecond),
		Canary: 1, MaxParallel: w.h.cfg.MaxParallel}
	if !plain && w.rng.Float64() < 0.4 {
		r.Canary = 0 // several hosts may reach the migration at once
	}
	if w.rng.Float64() < 0.3 {
		r.Pause = w.uniform(300*time.Millisecond, time.Second)
	}
	if !plain && (w.mig == nil || w.mig.Fail || w.rng.Float64() < 0.55) {
		w.migs++
		w.mig = &MigSpec{Service: "migrate", Image: fmt.Sprintf("app@sha256:%04d", w.migs),
			Idempotent: w.rng.Float64() < 0.4, Fail: w.rng.Float64() < 0.07, Run: w.uniform(300*time.Millisecond, 4*time.Second)}
	}
	if w.mig != nil && !(plain && w.mig.Fail) {
		r.Migrations = []MigSpec{*w.mig}
	}
	r.FailDeploy = !plain && w.rng.Float64() < 0.1
	return r
}

// commit writes r and moves the head to it.
func (w *workload) commit(r Revision, note string) {
	if err := writeJSON(revPath(w.h.dir, r.Name), r); err != nil {
		panic(err)
	}
	if err := writeJSON(headPath(w.h.dir), head{Rev: r.Name}); err != nil {
		panic(err)
	}
	bad := r.FailDeploy
	for _, m := range r.Migrations {
		bad = bad || m.Fail
	}
	w.mu.Lock()
	w.head, w.lastCommit = r.Name, time.Now()
	if !bad {
		w.good = append(w.good, r.Name)
	}
	w.mu.Unlock()
	what := ""
	for _, m := range r.Migrations {
		what += fmt.Sprintf(" migration %s idempotent=%t fail=%t", m.Image, m.Idempotent, m.Fail)
	}
	if r.FailDeploy {
		what += " deploy fails"
	}
	w.h.led.Write(Event{Kind: "commit", Rev: r.Name, Note: note + what})
	w.h.say("commit %s (%s)%s", r.Name, note, what)
}

func (w *workload) headRev() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.head
}

func (w *workload) rollingOut() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return time.Since(w.lastCommit) < 10*time.Second
}

func (w *workload) run(ctx context.Context) {
	for {
		if !sleepCtx(ctx, w.uniform(6*time.Second, 12*time.Second)) {
			return
		}
		hctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		halts, err := w.h.op.Halts(hctx, Env)
		cancel()
		halted := false
		for _, hl := range halts {
			halted = halted || (err == nil && hl.Revision == w.headRev())
		}
		if halted && w.rng.Float64() < 0.35 {
			w.h.say("op %s", w.operate(ctx, FaultRetry))
			continue
		}
		w.commit(w.revision(false), "commit")
	}
}

// operate is an operator's command: `berth retry`, or `berth rollback
// --fleet` to the revision before the head.
func (w *workload) operate(ctx context.Context, kind string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var err error
	target := ""
	switch kind {
	case FaultRetry:
		_, err = w.h.op.Retry(ctx, Env, fleet.PauseInfo{By: "chaos"})
	case FaultRollback:
		w.mu.Lock()
		head := w.head
		for i := len(w.good) - 1; i >= 0; i-- {
			if w.good[i] != head {
				target = w.good[i]
				break
			}
		}
		w.mu.Unlock()
		if target == "" {
			return "nothing to roll back to"
		}
		err = w.h.op.Rollback(ctx, Env, fleet.RollbackInfo{Commit: target, Head: head, By: "chaos", Reason: "chaos"})
	}
	note := ""
	if err != nil {
		note = err.Error()
	}
	w.h.led.Write(Event{Kind: "op", Outcome: kind, Rev: target, OK: err == nil, Note: note})
	if err != nil {
		return kind + " failed: " + note
	}
	return kind + " " + target
}
