package reconcile

import (
	"fmt"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/failure"
)

// recoverTo turns a panic of the calling function into a verdict in *errp,
// with the stack in the log only (DESIGN.md §7: one bad revision must never
// stop the daemon). Use as `defer recoverTo(&err, log, "servers")`.
func recoverTo(errp *error, log hclog.Logger, where Phase) {
	r := recover()
	if r == nil {
		return
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log.Error("panic recovered: recorded as a verdict on the revision", "where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*errp = failure.AsVerdict(fmt.Errorf("panic in %s: %v", where, r))
}

// safely runs f, turning its panic into a verdict: for the goroutines a
// phase starts, whose panics the phase's own recover cannot see.
func safely(log hclog.Logger, where Phase, f func() error) (err error) {
	defer recoverTo(&err, log, where)
	return f()
}
