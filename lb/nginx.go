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
)

// Nginx switches an nginx upstream: berth owns one file holding
// `upstream NAME { server …; }`, the operator's server block proxies to it.
type Nginx struct {
	// Upstream and File come from the environment's x-berth.lb.
	Upstream string
	File     string
	// Command is how to run nginx: "nginx" plus any flags that select the
	// instance (e.g. "-p", DIR, "-c", CONF). Default: nginx on PATH.
	Command []string
	// PidFile of the master process; default /run/nginx.pid.
	PidFile string
	// ProbeURL, when set, is fetched through nginx after a switch; any
	// answer below 500 passes.
	ProbeURL string
	// Drain bounds the wait for the worker processes that predate a reload
	// to finish their requests and exit.
	Drain time.Duration
	Log   hclog.Logger
}

// Switch points the upstream at backends ("127.0.0.1:PORT"): it writes the
// file atomically, checks the whole config with `nginx -t`, reloads, waits
// until no worker of the old config is left (so nothing sends traffic to a
// backend about to be retired), and probes through nginx. On any failure
// the previous file is put back (and nginx reloaded if it had been) and the
// error names the file.
func (n *Nginx) Switch(ctx context.Context, backends []string) error {
	prev, err := os.ReadFile(n.File)
	hadFile := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", n.File, err)
	}
	next := n.render(backends)
	if hadFile && bytes.Equal(prev, next) {
		return nil
	}
	if err := atomicfile.WriteFile(n.File, next, 0o644); err != nil {
		return err
	}
	reloaded := false
	restore := func(cause error) error {
		var rerr error
		if hadFile {
			rerr = atomicfile.WriteFile(n.File, prev, 0o644)
		} else {
			rerr = os.Remove(n.File)
		}
		if rerr == nil && reloaded {
			rerr = n.reload(context.WithoutCancel(ctx))
		}
		if rerr != nil {
			return fmt.Errorf("%w; restoring the previous %s also failed: %v", cause, n.File, rerr)
		}
		return cause
	}
	if out, err := n.run(ctx, "-t", "-q"); err != nil {
		return restore(fmt.Errorf("nginx rejected %s (upstream %s): %s", n.File, n.Upstream, out))
	}
	if err := n.reload(ctx); err != nil {
		return restore(err)
	}
	reloaded = true
	if n.ProbeURL != "" {
		if err := probe(ctx, n.ProbeURL); err != nil {
			return restore(fmt.Errorf("probe through nginx after switching %s: %w", n.Upstream, err))
		}
	}
	return nil
}

func (n *Nginx) render(backends []string) []byte {
	var b strings.Builder
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
	return strings.TrimSpace(string(out)), err
}

// reload signals the master and waits for every worker it had before to
// exit: those finish in-flight requests on the old upstream first. Only
// then may the old backend be stopped (killing it right after `-s reload`
// loses requests, measured).
func (n *Nginx) reload(ctx context.Context) error {
	master, err := n.masterPID()
	if err != nil {
		return err
	}
	old := children(master)
	if out, err := n.run(ctx, "-s", "reload"); err != nil {
		return fmt.Errorf("nginx reload: %v: %s", err, out)
	}
	drain := n.Drain
	if drain <= 0 {
		drain = 60 * time.Second
	}
	deadline := time.Now().Add(drain)
	for _, pid := range old {
		for alive(pid) {
			if time.Now().After(deadline) {
				n.logger().Warn("old nginx workers still running after reload", "pid", pid, "waited", drain)
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
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
		return 0, fmt.Errorf("nginx is not running? read pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("nginx pid file %s: %w", pf, err)
	}
	return pid, nil
}

// children lists the processes whose parent is pid (nginx's workers).
func children(pid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so split after ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			if c, err := strconv.Atoi(filepath.Base(filepath.Dir(s))); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
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
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
