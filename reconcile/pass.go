package reconcile

import (
	"slices"
	"sync"
	"time"

	"berth.dev/berth/envs"
	"berth.dev/berth/fleet"
)

// pass is what one Check learned on its way, for finish.
type pass struct {
	id      string
	started time.Time
	stage   Phase // the step being taken: list, fetch, load, plan, prepare, …
	stageAt time.Time
	// stageMu guards stage's writes against the deploy's progress
	// reports, which read it from the goroutines that pull and create,
	// and deployed, after which those reports are dropped.
	stageMu sync.Mutex
	// deployed: the deploy returned. A progress report of one of its
	// goroutines still finishing must not reach the observers after the
	// pass's end (a forge status went back to "deploying" after the
	// rollback's "failure").
	deployed bool
	// steps time the pass's own steps (list, fetch, load, plan) and its
	// journal writes before the deploy's phases.
	steps   []Timing
	journal time.Duration

	st      State // as loaded, then as the pass leaves it
	loaded  bool  // st was read: only then is it written back
	dirty   bool  // a request or the end of a hold changed st
	request []byte

	live, target string
	head         string // the branch head, once listed
	waiting      Wait   // what the pass waits on, while it does
	rev          *Revision
	env          *envs.Env
	res          *Report
	rec          *Record // the deploy's record, once the deploy began
	written      bool    // rec is in the journal already (a phase began)

	// A fleet's (fleet.go): the admission to deploy, the revision halted
	// fleet-wide, a fleet-wide rollback in force.
	adm           *fleet.Admission
	turn          *FleetTurn
	held          bool
	fleetRollback bool
}

// passSteps are a pass's own steps, timed in Record.Steps (the deploy
// times its phases itself).
var passSteps = []Phase{PhaseList, PhaseFetch, PhaseLoad, PhasePlan}

func (a *Agent) progress(p *pass, phase Phase) {
	now := time.Now()
	p.endStep(now)
	p.stageMu.Lock()
	p.stage, p.stageAt = phase, now
	p.stageMu.Unlock()
	a.markAttempt(p, phase) // before a step that could take the agent down
	if a.OnProgress != nil {
		a.OnProgress(Progress{Commit: p.target, Phase: phase, Started: p.started})
	}
}

// endStep times the pass's own step in progress, if one is.
func (p *pass) endStep(now time.Time) {
	if slices.Contains(passSteps, p.stage) && !p.stageAt.IsZero() {
		p.steps = append(p.steps, Timing{Name: p.stage, Duration: now.Sub(p.stageAt)})
		p.stageAt = time.Time{}
	}
}

// newRecord is the pass's record, filled with what is known of the revision.
func (p *pass) newRecord(a *Agent) *Record {
	if p.rec != nil {
		return p.rec
	}
	rec := &Record{ID: p.id, Env: a.Env, Commit: p.target, Started: p.started, Result: ResultRunning}
	if p.rev != nil {
		rec.Author, rec.Subject, rec.Signer = p.rev.Author, p.rev.Subject, p.rev.Signer
	}
	if p.env != nil {
		rec.Env = p.env.Name
		for _, s := range p.env.Services {
			if !slices.Contains(rec.Images, s.Config.Image) {
				rec.Images = append(rec.Images, s.Config.Image)
			}
		}
		for _, j := range p.env.Jobs {
			if j.Image != "" && !slices.Contains(rec.Images, j.Image) {
				rec.Images = append(rec.Images, j.Image) // kept from pruning
			}
		}
	}
	p.rec = rec
	return rec
}
