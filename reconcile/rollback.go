package reconcile

import (
	"context"
	"time"
)

// rollback undoes, in reverse, what the failed deploy did: balancer back,
// new containers removed, old workers started again.
func (p *deploy) rollback(phase string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := len(p.undo) - 1; i >= 0; i-- {
		if err := p.undo[i](ctx); err != nil {
			p.log.Error("rollback step failed", "phase", phase, "error", err)
		}
	}
	p.undo = nil
}
