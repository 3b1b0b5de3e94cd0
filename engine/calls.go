package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"

	"berth.dev/berth/internal/failure"
)

// Timeouts bound every call berth makes to the Docker engine, so a hung
// dockerd fails a pass as an outage instead of hanging the agent. Normal
// latencies measured on a loaded 2-core host (docs/benchmarks.md): list and
// inspect take milliseconds, create and start 1–3 s each, a forced remove
// under a second; the defaults leave ten times that and more. A start sets
// up the container's network and runtime, and with dozens of containers
// starting and checking on 2 cores one has taken over 30 s: abandoning it
// would only turn a slow host into failed passes, so it gets minutes.
type Timeouts struct {
	// Call bounds a call that reads or changes metadata: ping, list,
	// inspect, kill, attach, and network and volume operations. Default
	// 30 s.
	Call time.Duration
	// Start bounds creating a container, connecting it to its networks,
	// and starting it. Default 2 min.
	Start time.Duration
	// Remove bounds removing a container (a forced remove kills it first
	// and deletes its writable layer, which can hold many files) or an
	// image, and reading a finished container's logs. Default 2 min.
	Remove time.Duration
	// StopMargin is added to a stop's grace period: Docker sends SIGKILL
	// when the grace ends, so a stop takes the grace plus the time to
	// kill. Default 30 s.
	StopMargin time.Duration
	// Pull bounds a whole pull; Engine.PullStall gives up sooner on a pull
	// that makes no progress. Default 30 min.
	Pull time.Duration
}

// DefaultTimeouts are the deadlines of an Engine made by New.
var DefaultTimeouts = Timeouts{Call: 30 * time.Second, Start: 2 * time.Minute, Remove: 2 * time.Minute, StopMargin: 30 * time.Second, Pull: 30 * time.Minute}

// defaultStopGrace is Docker's own stop timeout for a container that sets
// none.
const defaultStopGrace = 10 * time.Second

// within returns ctx bounded by d (unbounded for d <= 0).
func within(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func (e *Engine) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return within(ctx, e.Timeouts.Call)
}

// starting bounds a create or a start (Timeouts.Start).
func (e *Engine) starting(ctx context.Context) (context.Context, context.CancelFunc) {
	return within(ctx, e.Timeouts.Start)
}

// classify marks err with what the engine's answer says about it (DESIGN.md
// §4), so that callers (reconcile) never read Docker's errors themselves:
//
//   - an engine that did not answer — unreachable, past the deadline, the
//     connection reset or cut mid-answer, or saying it is unavailable — is
//     an outage;
//   - a request it refused as invalid (400) is a verdict: the revision asked
//     for it (a bad mount, an unknown user, a command not in the image);
//   - the engine's own trouble or the host's is an outage: an internal
//     error (500) or one it cannot say, credentials the host lacks
//     (401/403), a name still held by a leftover the next pass retires
//     (409), a feature this engine lacks (501), data it lost;
//   - a missing object stays unmarked: a vanished container says nothing
//     about the revision, and the caller's step decides (a pull marks a
//     digest the registry does not know a verdict itself, classifyPull).
//
// A caller that cancelled its context gets the error unmarked too: it is
// stopping, not failing.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case failure.Of(err) != failure.Unclassed:
		return err
	case errors.Is(err, context.Canceled):
		return err
	case unreachable(err):
		return failure.AsOutage(err)
	case errdefs.IsInvalidParameter(err):
		return failure.AsVerdict(err)
	case errdefs.IsSystem(err), errdefs.IsUnknown(err), errdefs.IsUnauthorized(err), errdefs.IsForbidden(err),
		errdefs.IsConflict(err), errdefs.IsNotImplemented(err), errdefs.IsDataLoss(err):
		return failure.AsOutage(err)
	}
	return err
}

// classifyAt is classify for a call that changed something. An internal
// error (500) is an outage either way; when the engine, asked again on a
// new connection, does not answer, it is also stopping — a stopping dockerd
// answers the requests in flight with errors like "failed to update store
// … no such file" — and that is logged apart.
func (e *Engine) classifyAt(ctx context.Context, err error) error {
	if err != nil && failure.Of(err) == failure.Unclassed && errdefs.IsSystem(err) && ctx.Err() == nil && !e.answering(ctx) {
		return failure.AsOutage(fmt.Errorf("the engine stops answering: %w", err))
	}
	return classify(err)
}

// answering reports whether the engine accepts a new connection and
// answers a ping now. A stopping dockerd closes its listener before it
// stops the containers, yet still answers on the connections it has: only
// a new connection tells.
func (e *Engine) answering(ctx context.Context) bool {
	e.c.Close() // closes the idle pooled connections only; the ping dials anew
	ctx, cancel := e.call(ctx)
	defer cancel()
	_, err := e.c.Ping(ctx)
	return err == nil
}

// unreachable reports whether err says the engine (or, during a pull, the
// registry behind it) did not answer, rather than answered no.
func unreachable(err error) bool {
	if client.IsErrConnectionFailed(err) || errors.Is(err, context.DeadlineExceeded) || errdefs.IsUnavailable(err) || errdefs.IsDeadline(err) {
		return true
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH, syscall.ENETUNREACH, io.ErrUnexpectedEOF, net.ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return networkMessage(err.Error())
}

// networkMessage recognises, in an error the engine passed on as text (a
// pull's registry errors arrive as a message only), that a peer did not
// answer.
func networkMessage(msg string) bool {
	for _, s := range []string{
		"connection refused", "connection reset", "i/o timeout", "no such host", "network is unreachable",
		"no route to host", "TLS handshake timeout", "context deadline exceeded", "server misbehaving",
		"unexpected EOF", "broken pipe", "timeout awaiting response headers", "Client.Timeout exceeded",
		"503 Service Unavailable", "502 Bad Gateway", "504 Gateway Timeout", "toomanyrequests",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
