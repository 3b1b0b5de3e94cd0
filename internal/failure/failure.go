// Package failure classes the errors that end a deploy pass or a
// coordinated step (DESIGN.md §4, "Failure classes"):
//
//   - a Verdict is about the revision itself (invalid config, policy,
//     signature, an unknown digest, a migration that exits non-zero, a
//     container that never turns healthy, a load balancer that rejects the
//     config). The same revision would fail the same way again, so it is
//     marked failed and not retried until a new commit or `berth retry`.
//   - an Outage is about the world around it (Git, a registry, Vault,
//     Docker, nginx, HAProxy or etcd unreachable; a timeout; a full disk).
//     It is waited out with backoff, and the host goes on with the head by
//     itself once it ends.
//
// Adapters mark what they know (lb knows nginx -t rejected a file, engine
// knows the daemon did not answer); reconcile decides what an unmarked
// error means. The package imports nothing of berth's, so every adapter can
// use it without importing reconcile.
package failure

import (
	"errors"
)

// Class of an error.
type Class int

const (
	// Unclassed errors carry no mark; the caller's policy decides.
	Unclassed Class = iota
	// Outage: something the revision needs is unreachable; wait it out.
	Outage
	// Verdict: the revision is at fault; record it failed.
	Verdict
)

func (c Class) String() string {
	switch c {
	case Outage:
		return "outage"
	case Verdict:
		return "verdict"
	}
	return "unclassed"
}

type classed struct {
	err   error
	class Class
}

func (c *classed) Error() string { return c.err.Error() }
func (c *classed) Unwrap() error { return c.err }

// AsVerdict marks err as a verdict on the revision. nil stays nil.
func AsVerdict(err error) error {
	if err == nil {
		return nil
	}
	return &classed{err: err, class: Verdict}
}

// AsOutage marks err as an outage. nil stays nil.
func AsOutage(err error) error {
	if err == nil {
		return nil
	}
	return &classed{err: err, class: Outage}
}

// Of returns the class of err. An outage anywhere in err's tree (wrapped or
// joined) makes it an outage, even beside a verdict: a verdict must be
// certain, and one that hides behind an outage shows itself again once the
// outage has ended. Otherwise a verdict anywhere makes it a verdict.
func Of(err error) Class {
	found := Unclassed
	walk(err, func(c Class) bool {
		if c == Outage {
			found = Outage
			return true // nothing outranks it
		}
		if c == Verdict {
			found = Verdict
		}
		return false
	})
	return found
}

// IsVerdict reports whether Of(err) is Verdict.
func IsVerdict(err error) bool { return Of(err) == Verdict }

// IsOutage reports whether Of(err) is Outage.
func IsOutage(err error) bool { return Of(err) == Outage }

// walk visits the classes marked in err's tree, depth first, until visit
// returns true.
func walk(err error, visit func(Class) bool) bool {
	for err != nil {
		if c, ok := err.(*classed); ok && visit(c.class) {
			return true
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				if walk(e, visit) {
					return true
				}
			}
			return false
		}
		err = errors.Unwrap(err)
	}
	return false
}
