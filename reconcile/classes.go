package reconcile

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// What an error means for the revision (DESIGN.md §4). Adapters mark what
// they know with internal/failure (gitsource: a rewrite or a bad signature
// is a verdict; lb: nginx -t rejecting the file is a verdict; engine: each
// of Docker's answers, a digest the registry does not know included), so
// reconcile reads no adapter's own errors. An error
// that reaches reconcile without a mark is decided here: first by what it
// is, whichever step it came from (inherent), then by the step (the
// classify* functions below). docs/architecture.md has the table.
//
// The rule behind it: a verdict must be certain, because it stops the
// host from trying that commit again. Whatever could be the world's fault
// rather than the commit's is an outage: waited out, and the head goes on
// by itself once the world is back.

// inherent is the class an error has wherever it comes from, or Unclassed.
func inherent(err error) failure.Class {
	if c := failure.Of(err); c != failure.Unclassed {
		return c
	}
	var problems envs.Problems
	switch {
	case errors.As(err, &problems):
		return failure.Verdict // invalid config or policy
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return failure.Outage
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EIO):
		return failure.Outage // the host's disk: full, read-only, failing
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.ENETDOWN),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT), errors.Is(err, io.ErrUnexpectedEOF):
		return failure.Outage
	}
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	if errors.As(err, &netErr) || errors.As(err, &opErr) || errors.As(err, &dnsErr) || errors.As(err, &urlErr) {
		return failure.Outage // a transport failure: nothing answered
	}
	return failure.Unclassed
}

// mark gives err its inherent class, else dflt: what an unmarked error of
// that step means. An error already marked keeps its mark.
func mark(err error, dflt failure.Class) error {
	if err == nil || failure.Of(err) != failure.Unclassed {
		return err
	}
	c := inherent(err)
	if c == failure.Unclassed {
		c = dflt
	}
	if c == failure.Verdict {
		return failure.AsVerdict(err)
	}
	return failure.AsOutage(err)
}

// The steps' defaults, for errors with no inherent class.

// asOutage: Git (list, fetch), Vault, the container listing, the load
// balancer, the state dir: an unmarked error is the service's trouble.
func asOutage(err error) error { return mark(err, failure.Outage) }

// asVerdict: loading the revision from its working copy, the health gate
// of a new container: an unmarked error is the revision's.
func asVerdict(err error) error { return mark(err, failure.Verdict) }
