package reconcile

import (
	"context"
	"sync"
	"time"
)

// Each step of a rollback has a bound of its own (the engine bounds each
// of its calls too), under a larger one for the whole: one budget of two
// minutes for all let slow steps starve the ones after them (on a loaded
// engine the switch back and two removals used it, and the other new
// containers were left running). The whole stays under the unit's
// TimeoutStopSec (10 min), for a rollback on SIGTERM.
const (
	undoStepBound = 2 * time.Minute
	undoBound     = 8 * time.Minute
)

// rollback undoes, in reverse, what the failed deploy did: balancer back,
// new containers removed, old workers started again. What it put back goes
// to Result.Undone; a step that fails is logged and named there too.
func (p *deploy) rollback() {
	all, cancelAll := context.WithTimeout(context.Background(), undoBound)
	defer cancelAll()
	// Containers being created ahead of their phase are waited for, so
	// that their removal is part of the undo.
	p.aheadWG.Wait()
	for svc, ch := range p.ahead {
		if r := <-ch; r.set != nil {
			p.log.Debug("containers created ahead are removed", "service", svc, "containers", r.set.names)
		}
	}
	// In reverse; a run of neighbouring steps apart (removals of new
	// containers) at once: on a loaded engine a removal takes seconds each.
	errs := make([]error, len(p.undo))
	for i := len(p.undo) - 1; i >= 0; {
		j := i
		for j > 0 && p.undo[i].apart && p.undo[j-1].apart {
			j--
		}
		var wg sync.WaitGroup
		for k := i; k >= j; k-- {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[k] = p.undoStep(all, p.undo[k])
			}()
		}
		wg.Wait()
		for k := i; k >= j; k-- {
			if err := errs[k]; err != nil {
				p.log.Error("rollback step failed", "step", p.undo[k].what, "error", err)
				p.res.Undone = append(p.res.Undone, p.undo[k].what+" failed: "+err.Error())
				continue
			}
			p.res.Undone = append(p.res.Undone, p.undo[k].what)
		}
		i = j - 1
	}
	p.undo = nil
}

// undoStep runs one step of a rollback within its own bound.
func (p *deploy) undoStep(all context.Context, u undoStep) (err error) {
	defer recoverTo(&err, p.log, "rollback")
	ctx, cancel := context.WithTimeout(all, undoStepBound)
	defer cancel()
	return u.run(ctx)
}
