package engine

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// RunResult is how a one-shot container ended.
type RunResult struct {
	ExitCode int
	TimedOut bool
	Output   []byte // stdout and stderr interleaved, the last MaxOutput bytes
	Duration time.Duration
}

// MaxOutput caps the output kept of one run.
const MaxOutput = 64 << 10

// RunOnce creates and starts req's container, waits for it to exit (killing
// it after timeout), collects its output and removes it. The container is
// removed whatever happens, so a failed run leaves nothing behind.
func (e *Engine) RunOnce(ctx context.Context, req *Request, timeout time.Duration) (*RunResult, error) {
	id, err := e.Create(ctx, req)
	if err != nil {
		return nil, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := e.c.ContainerRemove(rctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			e.log.Warn("remove one-shot container", "container", req.Name, "error", err)
		}
	}()
	start := time.Now()
	if err := e.Start(ctx, id); err != nil {
		return nil, err
	}
	res := &RunResult{}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	statusCh, errCh := e.c.ContainerWait(wctx, id, container.WaitConditionNotRunning)
	select {
	case st := <-statusCh:
		res.ExitCode = int(st.StatusCode)
	case err := <-errCh:
		if wctx.Err() == nil || ctx.Err() != nil {
			return nil, fmt.Errorf("wait for %s: %w", req.Name, err)
		}
		res.TimedOut, res.ExitCode = true, -1
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		e.c.ContainerKill(kctx, id, "KILL")
		kcancel()
	}
	res.Duration = time.Since(start)
	res.Output = e.output(context.WithoutCancel(ctx), id)
	return res, nil
}

// output returns the tail of a container's logs.
func (e *Engine) output(ctx context.Context, id string) []byte {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rc, err := e.c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "2000"})
	if err != nil {
		return []byte(fmt.Sprintf("(logs unavailable: %v)", err))
	}
	defer rc.Close()
	var buf bytes.Buffer
	stdcopy.StdCopy(&buf, &buf, rc)
	b := buf.Bytes()
	if len(b) > MaxOutput {
		b = b[len(b)-MaxOutput:]
	}
	return b
}
