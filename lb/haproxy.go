package lb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/envs"
	"berth.dev/berth/internal/failure"
)

// HAProxy switches one HAProxy backend between a service's old and new
// servers through the runtime API, with no reload: it adds the new servers,
// waits until HAProxy's own checks see them UP, drains the old ones until
// their last session has ended, removes them, and persists the live servers
// in the backend's section file so that a reload or restart keeps them.
//
// Ownership: the backend is berth's when its section is the only thing in
// SERVERS_DIR/BACKEND.cfg (the operator puts it there; HAProxy loads the
// directory with -f), and berth changes only servers named berth-* in it.
// Other servers may stay only as backup or in maintenance: berth moves all
// of a backend's traffic, so an active server it does not manage would keep
// part of it on something else. Anything else is refused as a verdict.
type HAProxy struct {
	// Backend comes from the environment's x-berth.lb.
	Backend string
	// RuntimeAPI is "unix:/run/haproxy/admin.sock" or a loopback
	// "host:port": a stats socket with level admin.
	RuntimeAPI string
	// ServersDir holds BACKEND.cfg, the backend's section.
	ServersDir string
	// Command runs HAProxy's config check: "haproxy" plus the flags that
	// select the operator's config files; "-c" is appended. Default:
	// haproxy -f /etc/haproxy/haproxy.cfg -f SERVERS_DIR.
	Command []string
	// DrainTimeout bounds the wait for an old server's sessions to end;
	// the sessions still open then are cut (as stopping the old container
	// would). Default 60 s.
	DrainTimeout time.Duration
	// ReadyTimeout bounds the wait for HAProxy's checks to see a new
	// server UP, when the backend checks its servers. Default 30 s.
	ReadyTimeout time.Duration
	// Env, when set, is named in the backend's file as the env berth
	// switches it for: the other envs of the host refuse the backend
	// (HAProxyOwner).
	Env string
	Log hclog.Logger

	mu sync.Mutex
	// standby are the berth servers SwitchStandby took out of traffic and
	// left in maintenance (name → address): a Switch back to them makes
	// them ready at once, Retire deletes them.
	standby map[string]string
	// observe, when set (tests, benchmarks), hears each phase's duration.
	observe func(phase string, d time.Duration)
}

// ValidBackendName reports whether name may be used as a backend: it names
// a file in ServersDir and goes into runtime API commands, so it is held
// to letters, digits, '_', '.' and '-' (the rule validation applies to a
// repo's x-berth.lb.backend).
func ValidBackendName(name string) bool { return envs.ValidBackendName(name) }

func (h *HAProxy) check() (*runtimeAPI, error) {
	if !ValidBackendName(h.Backend) {
		return nil, failure.AsVerdict(fmt.Errorf("haproxy backend %q: use letters, digits, '_', '.' and '-'", h.Backend))
	}
	if h.ServersDir == "" {
		return nil, errors.New("haproxy: servers_dir is not set")
	}
	return parseRuntimeAPI(h.RuntimeAPI)
}

func (h *HAProxy) command() []string {
	if len(h.Command) > 0 {
		return h.Command
	}
	return []string{"haproxy", "-f", "/etc/haproxy/haproxy.cfg", "-f", h.ServersDir}
}

func (h *HAProxy) logger() hclog.Logger {
	if h.Log == nil {
		return hclog.NewNullLogger()
	}
	return h.Log
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// target is the set of berth servers a switch ends with, in order.
type target struct {
	names []string
	addr  map[string]string
}

// serverName is a berth server's name for addr, stable for the address: a
// switch back to a port reuses the name, a crash-restarted switch finds
// the servers it added. Ports are unique per host, so the loopback address
// is left out.
func serverName(ap netip.AddrPort) string {
	if ap.Addr() == netip.AddrFrom4([4]byte{127, 0, 0, 1}) {
		return "berth-" + strconv.Itoa(int(ap.Port()))
	}
	return "berth-" + ap.Addr().String() + "-" + strconv.Itoa(int(ap.Port()))
}

func isBerthServer(name string) bool { return strings.HasPrefix(name, "berth-") }

func targetOf(backends []string) (target, error) {
	t := target{addr: map[string]string{}}
	for _, b := range backends {
		ap, err := netip.ParseAddrPort(b)
		if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
			return t, fmt.Errorf("haproxy: backend address %q: want IPv4:PORT", b)
		}
		n := serverName(ap)
		if _, dup := t.addr[n]; dup {
			continue
		}
		t.names = append(t.names, n)
		t.addr[n] = ap.String()
	}
	return t, nil
}

// Switch makes backends ("127.0.0.1:PORT") the backend's berth servers.
// It is idempotent: when they are live and ready already and the file
// says so, it changes nothing (crash convergence calls it again, rollback
// calls it with the old backends).
//
// Order: the section file is written and `haproxy -c` checks it while the
// runtime API adds the new servers and HAProxy's checks bring them UP (in
// drain: no traffic yet). Only when both passed are the new servers made
// ready, then the old ones drained and removed. So a file HAProxy rejects
// sends no request anywhere new. If anything fails, the servers that were
// live are put back (new ones drained and removed, old ones re-added or
// made ready again) and the previous file restored. HAProxy refusing a
// command or the file is a verdict; not reaching it is an outage.
func (h *HAProxy) Switch(ctx context.Context, backends []string) error {
	return h.switchTo(ctx, backends, false)
}

// SwitchStandby is Switch, except that the berth servers it takes out of
// traffic are drained (their last session ended) and then left in
// maintenance rather than deleted: a Switch back to them — a later
// server's switch failing, the watch after the switch failing — makes them
// ready at once, with no check to wait for (they were serving until now).
// Retire deletes them once the new servers stay. A reload or restart of
// HAProxy in between forgets them (the file holds the live servers only);
// a Switch back then adds them again, as for any server.
func (h *HAProxy) SwitchStandby(ctx context.Context, backends []string) error {
	return h.switchTo(ctx, backends, true)
}

// Retire deletes the servers SwitchStandby left in maintenance.
func (h *HAProxy) Retire(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.standby) == 0 {
		return nil
	}
	api, err := h.check()
	if err != nil {
		return err
	}
	live, err := api.servers(ctx, h.Backend)
	if err != nil {
		return err
	}
	var gone []serverState
	for _, s := range live {
		if addr, ok := h.standby[s.Name]; ok && addr == s.Addr && !s.ready() {
			gone = append(gone, s)
		}
	}
	if err := h.drain(ctx, api, gone); err != nil {
		return err
	}
	if err := h.remove(ctx, api, gone); err != nil {
		return err
	}
	h.standby = nil
	return nil
}

func (h *HAProxy) switchTo(ctx context.Context, backends []string, keepOld bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	api, err := h.check()
	if err != nil {
		return err
	}
	want, err := targetOf(backends)
	if err != nil {
		return err
	}
	sec, err := readSection(h.file(), h.Backend)
	if err != nil {
		return err
	}
	live, err := h.liveServers(ctx, api)
	if err != nil {
		return err
	}
	prev := target{addr: map[string]string{}}
	for _, s := range live {
		if isBerthServer(s.Name) {
			prev.names = append(prev.names, s.Name)
			prev.addr[s.Name] = s.Addr
		}
	}
	next := sec.render(want.names, want.addr, h.Env)
	fileChanged := !bytes.Equal(sec.raw, next)
	runtimeSettled := settled(live, want)
	if !fileChanged && runtimeSettled {
		return nil
	}
	start := time.Now()
	fileOK := func() error { return nil }
	if fileChanged {
		if err := writeSectionFile(h.file(), next); err != nil {
			return err
		}
		fileOK = h.checkInBackground(ctx)
	}
	restoreFile := func(err error) error {
		if !fileChanged {
			return err
		}
		if ferr := writeSectionFile(h.file(), sec.raw); ferr != nil {
			return fmt.Errorf("%w; restoring the previous %s also failed: %v", err, h.file(), ferr)
		}
		return err
	}
	if runtimeSettled {
		return restoreFile(fileOK())
	}
	if err := h.converge(ctx, api, sec, want, live, fileOK, keepOld); err != nil {
		h.logger().Warn("haproxy switch failed, putting the previous servers back", "backend", h.Backend, "error", err)
		fileOK() // never leave the check running
		undo := context.WithoutCancel(ctx)
		if now, lerr := api.servers(undo, h.Backend); lerr != nil {
			err = fmt.Errorf("%w; putting the previous servers back also failed: %v", err, lerr)
		} else if uerr := h.converge(undo, api, sec, prev, now, nil, false); uerr != nil {
			err = fmt.Errorf("%w; putting the previous servers back also failed: %v", err, uerr)
		}
		return restoreFile(err)
	}
	h.logger().Info("haproxy backend switched", "backend", h.Backend,
		"servers", strings.Join(want.names, ","), "previous", strings.Join(prev.names, ","),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// checkInBackground starts `haproxy -c` and returns a function that waits
// for its result (the same result however often it is called).
func (h *HAProxy) checkInBackground(ctx context.Context) func() error {
	start := time.Now()
	var took time.Duration
	done := make(chan error, 1)
	go func() {
		err := h.checkConfig(ctx)
		took = time.Since(start)
		done <- err
	}()
	return sync.OnceValue(func() error {
		err := <-done
		h.phase("check", took)
		return err
	})
}

func (h *HAProxy) phase(name string, d time.Duration) {
	if h.observe != nil {
		h.observe(name, d)
	}
}

func (h *HAProxy) srv(name string) string { return h.Backend + "/" + name }
