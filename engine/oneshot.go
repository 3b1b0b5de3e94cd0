package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/secrets"
)

// MaxOutput is the tail of stdout and of stderr kept of one run, unless
// OneShot.MaxOutput says otherwise.
const MaxOutput = 1 << 20

// OneShot says how to run a container to completion. Migrations, cli
// services and scheduled job runs all run through RunOnce, so they stop,
// keep output and redact the same way.
type OneShot struct {
	// Timeout bounds the run from its start; 0: only ctx bounds it.
	Timeout time.Duration
	// Grace is how long a run that is stopped (its timeout passed, or ctx
	// ended) gets between its stop signal and SIGKILL; 0: the container's
	// stop_grace_period, else Docker's 10 s.
	Grace time.Duration
	// MaxOutput is the tail kept of stdout and of stderr; default
	// MaxOutput.
	MaxOutput int
	// Secrets are the values the container was given; they are redacted
	// from the kept output.
	Secrets []string
	// Started, when set, is called once the container runs.
	Started func(id string)
}

// RunResult is how a one-shot container ended.
type RunResult struct {
	// ExitCode is the container's own exit code; -1 when it was stopped
	// (TimedOut or Stopped) rather than exiting by itself.
	ExitCode int
	TimedOut bool
	// Stopped is why the run was stopped before it exited (the cause of
	// ctx: a replacement, the agent stopping); nil otherwise.
	Stopped  error
	Started  time.Time
	Duration time.Duration
	// Stdout and Stderr are the tails of each stream, Output the tail of
	// both interleaved as the container wrote them; each at most
	// MaxOutput bytes, secrets redacted.
	Stdout, Stderr, Output []byte
	// Bytes of each stream not kept.
	StdoutDropped, StderrDropped int64
}

// RunOnce creates and starts req's container, waits for it to exit, keeps
// the tail of its output with the secrets redacted, and removes it,
// whatever happens: a run leaves nothing behind (a removal that fails is
// logged; the next deploy or the job reaper removes it). A run whose
// timeout passes, or whose ctx ends, is stopped gracefully: its stop
// signal, then SIGKILL after the grace. Create and start are not cut short
// by ctx (a half-made container would be left behind); the wait is where a
// stop is seen. The error is the engine's (classed: an engine that does
// not answer is an outage); how the container ended is in the result.
func (e *Engine) RunOnce(ctx context.Context, req *Request, o OneShot) (*RunResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bg := context.WithoutCancel(ctx)
	id, err := e.Create(bg, req)
	if err != nil {
		// An engine that did not answer may still make it later; the next
		// deploy (or the job reaper) removes such leftovers.
		return nil, err
	}
	var runErr error
	defer func() {
		if failure.IsOutage(runErr) {
			// The engine is not answering: do not wait for it here.
			go e.removeLater(id, req.Name)
			return
		}
		if err := e.Remove(bg, id); err != nil {
			e.log.Warn("remove one-shot container", "container", req.Name, "error", err)
			go e.removeLater(id, req.Name)
		}
	}()
	res, err := e.runStarted(ctx, id, o)
	runErr = err
	return res, err
}

// runStarted starts a created one-shot container and sees it to its end.
func (e *Engine) runStarted(ctx context.Context, id string, o OneShot) (*RunResult, error) {
	bg := context.WithoutCancel(ctx)
	res := &RunResult{ExitCode: -1, Started: time.Now()}
	if err := e.Start(bg, id); err != nil {
		return nil, err
	}
	if o.Started != nil {
		o.Started(id)
	}
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if o.Timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, o.Timeout)
	}
	defer cancel()
	code, werr := e.waitExit(wctx, id)
	switch {
	case werr == nil:
		res.ExitCode = code
	case ctx.Err() != nil:
		res.Stopped = context.Cause(ctx)
	case wctx.Err() != nil:
		res.TimedOut = true
	default:
		return nil, werr
	}
	if res.ExitCode < 0 {
		var grace *time.Duration
		if o.Grace > 0 {
			grace = &o.Grace
		}
		if err := e.Stop(bg, id, grace); err != nil {
			return nil, err
		}
	}
	res.Duration = time.Since(res.Started)
	if err := e.collect(bg, id, o, res); err != nil {
		e.log.Warn("one-shot output", "container", short(id), "error", err)
	}
	return res, nil
}

// removeLater keeps trying to remove a one-shot container the engine did
// not remove when it ended (it did not answer), for a while; what is still
// left then is removed by the next deploy or the job reaper.
func (e *Engine) removeLater(id, name string) {
	for n := 1; n <= 7; n++ { // 5 s doubling: about 10 min in all
		time.Sleep(removeRetry.Delay(n))
		if err := e.Remove(context.Background(), id); err == nil {
			return
		} else if !failure.IsOutage(err) {
			e.log.Warn("remove one-shot container", "container", name, "error", err)
			return
		}
	}
}

// removeRetry is the pace of removeLater.
var removeRetry = backoff.Policy{Min: 5 * time.Second, Max: 5 * time.Minute, Jitter: 0.1}

// livenessEvery is how often a long wait asks the engine about the
// container it waits for: the wait's own stream would hang with a hung
// engine, the question does not (it has the call deadline).
const livenessEvery = 5 * time.Second

// waitExit waits for a started container to stop and returns its exit
// code. The error is ctx's when it ended first.
func (e *Engine) waitExit(ctx context.Context, id string) (int, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type exit struct {
		code int
		err  error
	}
	exited := make(chan exit, 1)
	go func() {
		// ContainerWait sends its request before it returns: with a hung
		// engine it blocks, so it runs beside the liveness checks.
		statusCh, errCh := e.c.ContainerWait(wctx, id, container.WaitConditionNotRunning)
		select {
		case st := <-statusCh:
			if st.Error != nil && st.Error.Message != "" {
				exited <- exit{int(st.StatusCode), fmt.Errorf("wait for %s: %s", short(id), st.Error.Message)}
				return
			}
			exited <- exit{int(st.StatusCode), nil}
		case err := <-errCh:
			exited <- exit{-1, classify(fmt.Errorf("wait for %s: %w", short(id), err))}
		}
	}()
	tick := time.NewTicker(livenessEvery)
	defer tick.Stop()
	for {
		select {
		case x := <-exited:
			if x.err != nil && ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return x.code, x.err
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-tick.C:
			if _, err := e.inspect(ctx, id); err != nil {
				if ctx.Err() != nil {
					return -1, ctx.Err()
				}
				if failure.IsOutage(err) {
					return -1, err
				}
			}
		}
	}
}

// WaitExit waits for a started container to stop and returns its exit
// code.
func (e *Engine) WaitExit(ctx context.Context, id string) (int, error) {
	return e.waitExit(ctx, id)
}

// collect keeps the tails of a finished container's output in res, with
// o.Secrets redacted.
func (e *Engine) collect(ctx context.Context, id string, o OneShot, res *RunResult) error {
	limit := o.MaxOutput
	if limit <= 0 {
		limit = MaxOutput
	}
	ctx, cancel := within(ctx, e.Timeouts.Remove)
	defer cancel()
	out, errb, both := &TailBuffer{Max: limit}, &TailBuffer{Max: limit}, &TailBuffer{Max: limit}
	rc, err := e.c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err == nil {
		_, err = stdcopy.StdCopy(io.MultiWriter(out, both), io.MultiWriter(errb, both), rc)
		rc.Close()
	}
	res.Stdout = redactTail(out.Bytes(), out.Dropped() > 0, o.Secrets)
	res.Stderr = redactTail(errb.Bytes(), errb.Dropped() > 0, o.Secrets)
	res.Output = redactTail(both.Bytes(), both.Dropped() > 0, o.Secrets)
	res.StdoutDropped, res.StderrDropped = out.Dropped(), errb.Dropped()
	if err != nil && !errors.Is(err, io.EOF) {
		return classify(fmt.Errorf("logs of %s: %w", short(id), err))
	}
	return nil
}

// redactTail redacts values from b. When b is the tail of a longer output,
// it may begin inside a value; that first partial line goes too, so no
// piece of a value is kept.
func redactTail(b []byte, truncated bool, values []string) []byte {
	s := string(b)
	if truncated && len(values) > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		} else {
			s = ""
		}
		// A multi-line value may have been cut at any of its lines.
		for _, v := range values {
			for _, line := range strings.Split(v, "\n")[1:] {
				if len(line) >= 4 {
					s = strings.ReplaceAll(s, line, "[redacted]")
				}
			}
		}
	}
	return []byte(secrets.Redact(s, values))
}
