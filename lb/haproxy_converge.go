package lb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"berth.dev/berth/internal/failure"
)

// liveServers reads the backend's servers and refuses a backend berth does
// not own.
func (h *HAProxy) liveServers(ctx context.Context, api *runtimeAPI) ([]serverState, error) {
	live, err := api.servers(ctx, h.Backend)
	if errors.Is(err, errNoBackend) {
		return nil, failure.AsVerdict(fmt.Errorf("haproxy has no backend %s (is %s loaded?)", h.Backend, h.file()))
	}
	if err != nil {
		return nil, err
	}
	var foreign []string
	for _, s := range live {
		if !isBerthServer(s.Name) && !s.Backup && !s.maint() {
			foreign = append(foreign, s.Name)
		}
	}
	if len(foreign) > 0 {
		return nil, failure.AsVerdict(fmt.Errorf("haproxy backend %s is not berth's: it serves traffic from servers berth does not manage (%s); berth moves all of a backend's traffic, so other servers may only be backup or disabled", h.Backend, strings.Join(foreign, ", ")))
	}
	return live, nil
}

// settled: the berth servers live are exactly want, at the same addresses,
// all ready.
func settled(live []serverState, want target) bool {
	n := 0
	for _, s := range live {
		if !isBerthServer(s.Name) {
			continue
		}
		n++
		if want.addr[s.Name] != s.Addr || !s.ready() {
			return false
		}
	}
	return n == len(want.names)
}

// converge takes the backend from live to want: add and ready what is
// missing, then drain and remove the rest (keepOld: drain and leave in
// maintenance, as standby). Each step is safe to repeat.
//
// gate, when set, is waited for before the first server is made ready or
// the first old one drained: the config check running meanwhile.
func (h *HAProxy) converge(ctx context.Context, api *runtimeAPI, sec *section, want target, live []serverState, gate func() error, keepOld bool) error {
	if gate == nil {
		gate = func() error { return nil }
	}
	byName := map[string]serverState{}
	for _, s := range live {
		byName[s.Name] = s
	}
	var old []serverState
	for _, s := range live {
		if _, keep := want.addr[s.Name]; isBerthServer(s.Name) && (!keep || want.addr[s.Name] != s.Addr) {
			old = append(old, s)
		}
	}
	// A berth name at another address cannot happen (names derive from
	// addresses) unless someone added it by hand: it goes first.
	for _, s := range old {
		if _, clash := want.addr[s.Name]; clash {
			if err := h.drain(ctx, api, []serverState{s}); err != nil {
				return err
			}
			if err := h.remove(ctx, api, []serverState{s}); err != nil {
				return err
			}
			delete(byName, s.Name)
		}
	}

	t := time.Now()
	if err := h.addReady(ctx, api, sec, want, byName, gate); err != nil {
		return err
	}
	h.phase("ready", time.Since(t))
	if err := gate(); err != nil {
		return err
	}

	t = time.Now()
	var gone []serverState
	for _, s := range old {
		if _, clash := want.addr[s.Name]; !clash {
			gone = append(gone, s)
		}
	}
	if err := h.drain(ctx, api, gone); err != nil {
		return err
	}
	h.phase("drain", time.Since(t))
	t = time.Now()
	if keepOld {
		if err := h.park(ctx, api, gone); err != nil {
			return err
		}
		h.phase("remove", time.Since(t))
		return nil
	}
	if err := h.remove(ctx, api, gone); err != nil {
		return err
	}
	for _, s := range gone {
		delete(h.standby, s.Name)
	}
	h.phase("remove", time.Since(t))
	return nil
}

// park puts drained servers in maintenance and remembers them as standby.
func (h *HAProxy) park(ctx context.Context, api *runtimeAPI, servers []serverState) error {
	for _, s := range servers {
		if !s.maint() {
			if err := api.exec(ctx, "set server "+h.srv(s.Name)+" state maint", ""); err != nil {
				return err
			}
		}
		if h.standby == nil {
			h.standby = map[string]string{}
		}
		h.standby[s.Name] = s.Addr
	}
	return nil
}
