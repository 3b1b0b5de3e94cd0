package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/atomicfile"
	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
)

// Nginx switches an nginx upstream: berth owns one file holding
// `upstream NAME { server …; }`, the operator's server block proxies to it.
type Nginx struct {
	// Upstream and File come from the environment's x-berth.lb; Env
	// names the environment, on the file's first line (nginx_owner.go).
	Upstream string
	File     string
	Env      string
	// Command is how to run nginx: "nginx" plus any flags that select the
	// instance (e.g. "-p", DIR, "-c", CONF). Default: nginx on PATH.
	Command []string
	// PidFile of the master process; default /run/nginx.pid.
	PidFile string
	// ProbeURL, when set, is fetched through nginx after a switch; any
	// answer below 500 passes.
	ProbeURL string
	// Drain bounds the wait for worker processes of older configurations
	// to finish their requests and exit (default 60 s: nginx's own
	// client_header_timeout, see drain).
	Drain time.Duration
	Log   hclog.Logger
}

// Switch points the upstream at backends ("127.0.0.1:PORT"): it writes the
// file atomically, checks the whole config with `nginx -t`, reloads, waits
// until no worker of an older config is left (so nothing sends traffic to
// a backend about to be retired), and probes through nginx. On any failure
// the previous file is put back (and nginx reloaded if it had been) and the
// error names the file.
//
// Each switch reloads nginx once, also across a crash of the agent: a file
// that already says what is wanted is reloaded only when nginx has not
// loaded it yet (an agent killed between writing and reloading), and in
// every case Switch returns only once the older workers are gone (an agent
// killed while they drained). A reload costs clients on idle keep-alive
// connections a reconnect — nginx closes those in the workers it retires
// — so a repeated one is not free.
//
// Errors are classed (DESIGN.md §4): a config nginx rejects is a verdict;
// nginx not running, its pid file missing, a reload that cannot reach the
// master, a probe that gets no answer are outages.
func (n *Nginx) Switch(ctx context.Context, backends []string) error {
	prev, err := os.ReadFile(n.File)
	hadFile := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return failure.AsOutage(fmt.Errorf("read %s: %w", n.File, err))
	}
	if why := notOurs(parseNginxFile(filepath.Base(n.File), prev), n.Env, n.Upstream); hadFile && why != "" {
		// Never overwrite another environment's file, or an operator's.
		return failure.AsVerdict(fmt.Errorf("refusing to write %s for upstream %s: %s", n.File, n.Upstream, why))
	}
	next := n.render(backends)
	if hadFile && bytes.Equal(prev, next) {
		master, err := n.masterPID()
		if err != nil {
			return err
		}
		loaded, err := loadedSince(master, n.File)
		if err != nil {
			return failure.AsOutage(err)
		}
		if loaded {
			return n.drain(ctx, master)
		}
		n.logger().Info("upstream file written but not loaded (the agent stopped before it reloaded nginx): reloading", "file", n.File)
		if out, err := n.run(ctx, "-t", "-q"); err != nil {
			return n.rejected(out, err)
		}
		if _, err := n.reload(ctx); err != nil {
			return err
		}
		if n.ProbeURL != "" {
			if err := probe(ctx, n.ProbeURL); err != nil {
				return fmt.Errorf("probe through nginx after switching %s: %w", n.Upstream, err)
			}
		}
		return nil
	}
	if err := atomicfile.WriteFile(n.File, next, 0o644); err != nil {
		return failure.AsOutage(err)
	}
	var reloaded bool
	restore := func(cause error) error {
		var rerr error
		if hadFile {
			rerr = atomicfile.WriteFile(n.File, prev, 0o644)
		} else {
			rerr = os.Remove(n.File)
		}
		if rerr == nil && reloaded {
			_, rerr = n.reload(context.WithoutCancel(ctx))
		}
		if rerr != nil {
			return fmt.Errorf("%w; restoring the previous %s also failed: %v", cause, n.File, rerr)
		}
		return cause
	}
	if out, err := n.run(ctx, "-t", "-q"); err != nil {
		return restore(n.rejected(out, err))
	}
	reloaded, err = n.reload(ctx)
	if err != nil {
		// Interrupted during the drain (the agent stopping), nginx runs
		// the new file: restore reloads the previous one.
		return restore(err)
	}
	if n.ProbeURL != "" {
		if err := probe(ctx, n.ProbeURL); err != nil {
			return restore(fmt.Errorf("probe through nginx after switching %s: %w", n.Upstream, err))
		}
	}
	return nil
}

// rejected is the error of a failed `nginx -t`: a verdict when nginx ran
// and refused the config, an outage when it could not be run.
func (n *Nginx) rejected(out string, err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() > 0 {
		return failure.AsVerdict(fmt.Errorf("nginx rejected %s (upstream %s): %s", n.File, n.Upstream, out))
	}
	return failure.AsOutage(fmt.Errorf("nginx -t for %s: %v: %s", n.File, err, out))
}

func (n *Nginx) render(backends []string) []byte {
	var b strings.Builder
	if n.Env != "" {
		b.WriteString(ownerLine(n.Env, n.Upstream))
	}
	fmt.Fprintf(&b, "# Written by berth; changes here are overwritten on the next deploy.\nupstream %s {\n", n.Upstream)
	for _, be := range backends {
		fmt.Fprintf(&b, "    server %s;\n", be)
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

func (n *Nginx) run(ctx context.Context, args ...string) (string, error) {
	cmdline := n.Command
	if len(cmdline) == 0 {
		cmdline = []string{"nginx"}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cmdline[0], append(append([]string{}, cmdline[1:]...), args...)...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%v (%w)", err, ctx.Err())
	}
	return strings.TrimSpace(string(out)), err
}

// reload signals the master and waits until every worker of an older
// configuration has exited: those finish in-flight requests on the old
// upstream first. Only then may the old backend be stopped (killing it
// right after `-s reload` loses requests, measured).
// It reports whether the reload signal reached nginx.
func (n *Nginx) reload(ctx context.Context) (bool, error) {
	master, err := n.masterPID()
	if err != nil {
		return false, err
	}
	before := current(master)
	if out, err := n.run(ctx, "-s", "reload"); err != nil {
		return false, failure.AsOutage(fmt.Errorf("nginx reload: %v: %s", err, out))
	}
	// The master starts the new workers and tells the old ones to shut
	// down once it has read the config: wait for that before draining.
	deadline := time.Now().Add(10 * time.Second)
	for !replaced(master, before) {
		if time.Now().After(deadline) {
			return true, failure.AsOutage(fmt.Errorf("nginx reload: no new workers 10 s after the reload signal (see nginx's error log)"))
		}
		if err := backoff.Sleep(ctx, 5*time.Millisecond); err != nil {
			return true, err
		}
	}
	return true, n.drain(ctx, master)
}

// drain waits until no worker of master is shutting down, at most Drain.
//
// Why a drain can take long (the "≈50 s outlier"): an old worker exits
// once its last connection closes. Idle keep-alive connections it closes
// at once, and requests in flight finish; but a connection a client opened
// and has not sent a request on yet is kept until nginx's
// client_header_timeout (60 s by default) — and Go's HTTP client (a dial
// that lost the race to a freed connection stays in its pool, unused),
// browsers (pre-connects) and some load balancers leave such connections.
// Retiring the old backend earlier would be wrong: a request sent on that
// connection is still proxied with the old upstream. nginx's
// worker_shutdown_timeout bounds it on the host (docs/operations.md);
// Drain bounds berth's wait.
func (n *Nginx) drain(ctx context.Context, master int) error {
	limit := n.Drain
	if limit <= 0 {
		limit = 60 * time.Second
	}
	start := time.Now()
	logged := false
	for {
		old := shuttingDown(master)
		if len(old) == 0 {
			return nil
		}
		waited := time.Since(start)
		if waited >= limit {
			n.logger().Warn("old nginx workers still running after the drain timeout; going on", "pids", old, "waited", waited.Round(time.Millisecond),
				"hint", "a client holds a connection without a request on it; nginx's worker_shutdown_timeout bounds this")
			return nil
		}
		if !logged && waited > 5*time.Second {
			n.logger().Info("waiting for old nginx workers to exit", "pids", old,
				"hint", "a client holds a connection without a request on it, kept until client_header_timeout or worker_shutdown_timeout")
			logged = true
		}
		if err := backoff.Sleep(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

func (n *Nginx) logger() hclog.Logger {
	if n.Log == nil {
		return hclog.NewNullLogger()
	}
	return n.Log
}

func (n *Nginx) masterPID() (int, error) {
	pf := n.PidFile
	if pf == "" {
		pf = "/run/nginx.pid"
	}
	b, err := os.ReadFile(pf)
	if err != nil {
		return 0, failure.AsOutage(fmt.Errorf("nginx is not running? read pid file: %w", err))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, failure.AsOutage(fmt.Errorf("nginx pid file %s: %w", pf, err))
	}
	if !alive(pid) {
		return 0, failure.AsOutage(fmt.Errorf("nginx is not running: no process %d (pid file %s)", pid, pf))
	}
	return pid, nil
}

func probe(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return failure.AsOutage(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		// nginx answered, the new backend behind it did not serve.
		return failure.AsVerdict(fmt.Errorf("%s answered %s", url, resp.Status))
	}
	return nil
}
