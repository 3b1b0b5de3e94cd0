package reconcile

import (
	"context"
	"time"
)

// rollback undoes, in reverse, what the failed deploy did: balancer back,
// new containers removed, old workers started again. What it put back goes
// to Result.Undone; a step that fails is logged and named there too.
func (p *deploy) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Containers being created ahead of their phase are waited for, so
	// that their removal is part of the undo.
	p.aheadWG.Wait()
	for svc, ch := range p.ahead {
		if r := <-ch; r.set != nil {
			p.log.Debug("containers created ahead are removed", "service", svc, "containers", r.set.names)
		}
	}
	for i := len(p.undo) - 1; i >= 0; i-- {
		u := p.undo[i]
		err := func() (err error) {
			defer recoverTo(&err, p.log, "rollback")
			return u.run(ctx)
		}()
		if err != nil {
			p.log.Error("rollback step failed", "step", u.what, "error", err)
			p.res.Undone = append(p.res.Undone, u.what+" failed: "+err.Error())
			continue
		}
		p.res.Undone = append(p.res.Undone, u.what)
	}
	p.undo = nil
}
