package lb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"berth.dev/berth/internal/backoff"
	"berth.dev/berth/internal/failure"
)

// The runtime half of the HAProxy switch: add and ready, drain, remove.

// pollEvery paces the waits on HAProxy's state (two runtime API commands
// per poll over a local socket).
const pollEvery = 20 * time.Millisecond

// addReady adds want's missing servers and makes every one of them ready.
// A new server is added in maintenance (as `add server` creates it); with
// checks, it is first put in drain, where HAProxy checks it but sends it no
// traffic, and made ready only once `rise` checks in a row have passed.
func (h *HAProxy) addReady(ctx context.Context, api *runtimeAPI, sec *section, want target, live map[string]serverState, gate func() error) error {
	var pending []string
	for _, n := range want.names {
		s, ok := live[n]
		if ok && s.ready() {
			continue
		}
		if ok && h.standby[n] == s.Addr && s.Addr == want.addr[n] {
			// Kept in maintenance by SwitchStandby: it was serving until
			// then and its container still runs. Ready at once (HAProxy
			// counts a server leaving maintenance UP until a check fails),
			// without waiting for the config check of a file that lists
			// it again: the old servers are going back, not new ones.
			if err := api.exec(ctx, "set server "+h.srv(n)+" state ready", ""); err != nil {
				return err
			}
			delete(h.standby, n)
			continue
		}
		if !ok {
			cmd := "add server " + h.srv(n) + " " + want.addr[n]
			if len(sec.serverOpts) > 0 {
				cmd += " " + strings.Join(sec.serverOpts, " ")
			}
			err := api.exec(ctx, cmd, "New server registered.")
			if refusedWith(err, "Already exists") {
				// A reload loaded it from the file since live was read.
				err = h.sameServer(ctx, api, n, want.addr[n], err)
			}
			if err != nil {
				return fmt.Errorf("add %s: %w", want.addr[n], err)
			}
		}
		if sec.checked {
			if err := api.exec(ctx, "enable health "+h.srv(n), ""); err != nil {
				return err
			}
			if err := api.exec(ctx, "set server "+h.srv(n)+" state drain", ""); err != nil {
				return err
			}
			// Leaving maintenance, HAProxy counts a server UP until a check
			// fails; berth wants it UP because checks passed (`rise` in a
			// row), so it starts it DOWN. No traffic reaches it meanwhile:
			// it is in drain.
			if err := api.exec(ctx, "set server "+h.srv(n)+" health down", ""); err != nil {
				return err
			}
		}
		pending = append(pending, n)
	}
	if len(pending) == 0 {
		return nil
	}
	if sec.checked {
		if err := h.waitUp(ctx, api, pending); err != nil {
			return err
		}
	}
	if err := gate(); err != nil {
		return err
	}
	for _, n := range pending {
		if err := api.exec(ctx, "set server "+h.srv(n)+" state ready", ""); err != nil {
			return err
		}
	}
	return nil
}

// sameServer returns nil if backend has server name at addr, else refused.
func (h *HAProxy) sameServer(ctx context.Context, api *runtimeAPI, name, addr string, refused error) error {
	live, err := api.servers(ctx, h.Backend)
	if err != nil {
		return err
	}
	if s, ok := serverByName(live, name); ok && s.Addr == addr {
		return nil
	}
	return refused
}

// waitUp waits until HAProxy's checks see every server in names UP. One
// that is not within ReadyTimeout fails the switch: a verdict, as for a
// container that never turns healthy.
func (h *HAProxy) waitUp(ctx context.Context, api *runtimeAPI, names []string) error {
	timeout := orDefault(h.ReadyTimeout, 30*time.Second)
	deadline := time.Now().Add(timeout)
	for {
		live, err := api.servers(ctx, h.Backend)
		if err != nil {
			return err
		}
		var down []string
		for _, n := range names {
			s, ok := serverByName(live, n)
			if !ok {
				return failure.AsVerdict(fmt.Errorf("haproxy: server %s vanished while waiting for its checks", h.srv(n)))
			}
			if s.Op != opRunning && s.Op != opStarting {
				down = append(down, fmt.Sprintf("%s (%s, last check %s)", s.Addr, n, orDash(s.Check)))
			}
		}
		if len(down) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return failure.AsVerdict(fmt.Errorf("haproxy backend %s: new servers not UP in HAProxy's checks after %s: %s", h.Backend, timeout, strings.Join(down, ", ")))
		}
		if err := backoff.Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// drain takes servers out of load balancing and waits until their last
// session has ended. Past DrainTimeout the sessions left are cut, as
// stopping the old container would cut them; that is logged, not an error.
func (h *HAProxy) drain(ctx context.Context, api *runtimeAPI, servers []serverState) error {
	if len(servers) == 0 {
		return nil
	}
	for _, s := range servers {
		if !s.drain() && !s.maint() {
			if err := api.exec(ctx, "set server "+h.srv(s.Name)+" state drain", ""); err != nil {
				return err
			}
		}
	}
	timeout := orDefault(h.DrainTimeout, 60*time.Second)
	deadline := time.Now().Add(timeout)
	// Idle must be seen twice in a row: a stream that picked the server
	// just before the drain is counted a moment later.
	idleSeen := 0
	for {
		live, err := api.servers(ctx, h.Backend)
		if err != nil {
			return err
		}
		var busy []serverState
		for _, s := range servers {
			if l, ok := serverByName(live, s.Name); ok && l.Sessions+l.Queued > 0 {
				busy = append(busy, l)
			}
		}
		if len(busy) == 0 {
			if idleSeen++; idleSeen == 2 {
				return nil
			}
		} else {
			idleSeen = 0
		}
		if len(busy) > 0 && time.Now().After(deadline) {
			for _, s := range busy {
				h.logger().Warn("haproxy: cutting the sessions left on a drained server", "backend", h.Backend,
					"server", s.Name, "sessions", s.Sessions, "queued", s.Queued, "waited", timeout)
				if err := api.exec(ctx, "shutdown sessions server "+h.srv(s.Name), ""); err != nil {
					return err
				}
			}
			return nil
		}
		if err := backoff.Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
}

// removeTimeout bounds the wait for HAProxy to let go of a drained
// server's last connections before `del server` accepts it.
const removeTimeout = 15 * time.Second

// remove puts servers in maintenance and deletes them. HAProxy refuses to
// delete a server that still has a stream or a connection; that is waited
// for, briefly.
func (h *HAProxy) remove(ctx context.Context, api *runtimeAPI, servers []serverState) error {
	for _, s := range servers {
		if !s.maint() {
			err := api.exec(ctx, "set server "+h.srv(s.Name)+" state maint", "")
			if refusedWith(err, "No such server") {
				continue
			}
			if err != nil {
				return err
			}
		}
		deadline := time.Now().Add(removeTimeout)
		for {
			err := api.exec(ctx, "del server "+h.srv(s.Name), "Server deleted.")
			if err == nil || refusedWith(err, "No such server") {
				break
			}
			if !refusedWith(err, "connection") || time.Now().After(deadline) {
				return fmt.Errorf("remove %s: %w", s.Addr, err)
			}
			if err := backoff.Sleep(ctx, pollEvery); err != nil {
				return err
			}
		}
	}
	return nil
}

// ServerStat is one of berth's servers as HAProxy counts it (`show stat`),
// for watching a release after the switch: counters are cumulative since
// the server was added, so compare two readings.
type ServerStat struct {
	Name, Addr string
	// Status as HAProxy shows it: UP, DOWN, DRAIN, MAINT, "UP 1/2", …
	Status string
	// Sessions is the current number of sessions (scur).
	Sessions int64
	// Responses counts HTTP responses by class (hrsp_1xx … hrsp_other);
	// Responses5xx is hrsp_5xx alone.
	Responses, Responses5xx int64
	// ConnErrors (econ) and RespErrors (eresp) are failures to connect
	// to, or to read an answer from, the server.
	ConnErrors, RespErrors int64
}

// ServerStats reads the counters of the backend's berth servers.
func (h *HAProxy) ServerStats(ctx context.Context) ([]ServerStat, error) {
	api, err := h.check()
	if err != nil {
		return nil, err
	}
	rows, err := api.stat(ctx, h.Backend)
	if errors.Is(err, errNoBackend) {
		return nil, failure.AsVerdict(fmt.Errorf("haproxy has no backend %s", h.Backend))
	}
	if err != nil {
		return nil, err
	}
	var out []ServerStat
	for _, r := range rows {
		if !isBerthServer(r["svname"]) {
			continue
		}
		n := func(k string) int64 { v, _ := strconv.ParseInt(r[k], 10, 64); return v }
		st := ServerStat{
			Name: r["svname"], Addr: r["addr"], Status: r["status"],
			Sessions:     n("scur"),
			Responses5xx: n("hrsp_5xx"),
			ConnErrors:   n("econ"),
			RespErrors:   n("eresp"),
		}
		for _, k := range []string{"hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other"} {
			st.Responses += n(k)
		}
		out = append(out, st)
	}
	return out, nil
}

func serverByName(list []serverState, name string) (serverState, bool) {
	for _, s := range list {
		if s.Name == name {
			return s, true
		}
	}
	return serverState{}, false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
