package ui

import (
	"context"
	"net/url"
	"slices"
	"time"

	"berth.dev/berth/fleet"
)

// The fleet's pages beyond its overview (fleetview.go): one host, one
// job across the fleet, each from the same read (fleetsrc.go).

// fleetRead says how current a fleet page is: Err why etcd's answer is
// missing, At when the fleet it shows was read (zero: nothing shown).
type fleetRead struct {
	Err string
	At  time.Time
}

func readOf(snap []fleet.Overview, at time.Time, err error) fleetRead {
	if err == nil {
		return fleetRead{}
	}
	r := fleetRead{Err: clean(err.Error())}
	if snap != nil {
		r.At = at
	}
	return r
}

// fleetPage is the fleet's page: every env, or the one ?env= names
// first.
func (s *Server) fleetPage(ctx context.Context, q url.Values, now time.Time) fleetView {
	var v fleetView
	if s.Local != nil {
		v.HostHref = href()
	}
	snap, at, err := s.Fleet.overview(ctx, s.now)
	v.Read = readOf(snap, at, err)
	for i := range snap {
		v.Envs = append(v.Envs, fleetEnvOf(&snap[i], q, now))
	}
	return v
}

// fleetHostView is one host of a fleet.
type fleetHostView struct {
	Env    string
	Row    hostRow
	Health []kv
	// Clock is the host's wall clock when it last wrote its record.
	Clock    time.Time
	Failed   string
	Held     string
	Marks    []mark
	Result   *mark
	HostHref string // this host's own page, when it is this agent
	Read     fleetRead
	// Found: the host is in the fleet read (else only Read is shown).
	Found bool
}

type kv struct{ K, V string }

func (s *Server) fleetHostPage(ctx context.Context, env, host string) (*fleetHostView, error) {
	snap, at, err := s.Fleet.overview(ctx, s.now)
	read := readOf(snap, at, err)
	if snap == nil && err != nil {
		return &fleetHostView{Env: clean(env), Row: hostRow{Name: clean(host)}, Read: read}, nil
	}
	for i := range snap {
		if snap[i].Env != env {
			continue
		}
		for j := range snap[i].Hosts {
			h := &snap[i].Hosts[j]
			if h.Host != host {
				continue
			}
			v := &fleetHostView{Env: clean(env), Row: hostRowOf(env, h), Clock: h.Clock, Failed: short(h.Failed), Held: clean(h.Held),
				Read: read, Found: true}
			for _, k := range sortedKeys(h.Health) {
				v.Health = append(v.Health, kv{K: clean(k), V: clean(h.Health[k])})
			}
			if p := h.Paused; p != nil {
				v.Marks = append(v.Marks, mark{Kind: "paused", Text: "paused" + reasonOf(p.Reason), By: clean(p.By), At: p.At})
			}
			if r := h.Result; r != nil {
				text := clean(r.Class)
				if r.RolledBack {
					text = "rolled back"
				}
				v.Result = &mark{Kind: resultKind(r.Class), Text: text + reasonOf(r.Reason), At: r.At, Commit: short(r.Revision)}
			}
			if s.Local != nil && s.Fleet.Host == host {
				v.HostHref = href()
			}
			return v, nil
		}
	}
	return nil, nil
}

func resultKind(class string) string {
	switch class {
	case "ok":
		return "ok"
	case "verdict":
		return "failed"
	}
	return "outage"
}

// fleetJobView is one job's runs across the fleet.
type fleetJobView struct {
	Env, Name string
	Runs      []runView
	Read      fleetRead
	Found     bool // the job is in the fleet read
}

func (s *Server) fleetJobPage(ctx context.Context, env, job string) (*fleetJobView, error) {
	snap, at, err := s.Fleet.overview(ctx, s.now)
	read := readOf(snap, at, err)
	if snap == nil && err != nil {
		return &fleetJobView{Env: clean(env), Name: clean(job), Read: read}, nil
	}
	for i := range snap {
		if snap[i].Env != env {
			continue
		}
		for _, jh := range snap[i].Jobs {
			if jh.Job != job {
				continue
			}
			v := &fleetJobView{Env: clean(env), Name: clean(job), Read: read, Found: true}
			for k := range jh.Runs {
				v.Runs = append(v.Runs, fleetRun(env, &jh.Runs[k]))
			}
			return v, nil
		}
	}
	return nil, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
