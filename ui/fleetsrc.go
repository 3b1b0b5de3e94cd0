package ui

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"berth.dev/berth/fleet"
)

// FleetReader is what the fleet's pages read from etcd; *fleet.Client is
// one. A page costs one Overview (one transaction per dozen envs),
// whatever the number of hosts, jobs or revisions.
type FleetReader interface {
	Envs(ctx context.Context) ([]string, error)
	Overview(ctx context.Context, envs []string) ([]fleet.Overview, error)
	Revision(ctx context.Context) (int64, error)
}

// Fleet is the fleet's side of the page.
type Fleet struct {
	Reader FleetReader
	// Envs are shown always (the agent's own); others found under the
	// prefix are shown too unless Only is set.
	Envs []string
	Only bool
	// Host is this agent's name in the fleet ("" for berth ui): its row
	// links the host's own page.
	Host string

	mu       sync.Mutex
	envs     []string
	envsAt   time.Time
	snap     []fleet.Overview
	snapAt   time.Time
	snapErr  error
	inflight chan struct{}
}

// How long a read is reused: every viewer of a page within snapFor
// shares one etcd read; the env list is read again every envsFor.
const (
	snapFor = time.Second
	envsFor = 30 * time.Second
	// fleetTimeout bounds a page's etcd reads.
	fleetTimeout = 5 * time.Second
)

// overview is the fleet's current read, shared by concurrent requests.
func (f *Fleet) overview(ctx context.Context, now time.Time) ([]fleet.Overview, error) {
	f.mu.Lock()
	for f.inflight != nil {
		ch := f.inflight
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		f.mu.Lock()
	}
	if !f.snapAt.IsZero() && now.Sub(f.snapAt) < snapFor {
		snap, err := f.snap, f.snapErr
		f.mu.Unlock()
		return snap, err
	}
	ch := make(chan struct{})
	f.inflight = ch
	f.mu.Unlock()

	snap, err := f.read(ctx, now)

	f.mu.Lock()
	f.snap, f.snapErr, f.snapAt, f.inflight = snap, err, time.Now(), nil
	f.mu.Unlock()
	close(ch)
	return snap, err
}

func (f *Fleet) read(ctx context.Context, now time.Time) ([]fleet.Overview, error) {
	ctx, cancel := context.WithTimeout(ctx, fleetTimeout)
	defer cancel()
	names := slices.Clone(f.Envs)
	if !f.Only {
		f.mu.Lock()
		known, at := f.envs, f.envsAt
		f.mu.Unlock()
		if at.IsZero() || now.Sub(at) >= envsFor {
			found, err := f.Reader.Envs(ctx)
			if err != nil {
				return nil, fmt.Errorf("etcd unreachable: list envs: %w", err)
			}
			known = found
			f.mu.Lock()
			f.envs, f.envsAt = found, now
			f.mu.Unlock()
		}
		for _, e := range known {
			if !slices.Contains(names, e) {
				names = append(names, e)
			}
		}
	}
	slices.Sort(names)
	if len(names) == 0 {
		return nil, nil
	}
	out, err := f.Reader.Overview(ctx, names)
	if err != nil {
		return nil, fmt.Errorf("etcd unreachable: %w", err)
	}
	return out, nil
}

// fleetPage is the fleet's page: every env, or the one ?env= names
// first.
func (s *Server) fleetPage(ctx context.Context, q url.Values, now time.Time) fleetView {
	var v fleetView
	if s.Local != nil {
		v.HostHref = href()
	}
	snap, err := s.Fleet.overview(ctx, now)
	if err != nil {
		v.Err = clean(err.Error())
		return v
	}
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
	Err      string
}

type kv struct{ K, V string }

func (s *Server) fleetHostPage(ctx context.Context, env, host string, now time.Time) (*fleetHostView, error) {
	snap, err := s.Fleet.overview(ctx, now)
	if err != nil {
		return &fleetHostView{Env: clean(env), Err: clean(err.Error())}, nil
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
			v := &fleetHostView{Env: clean(env), Row: hostRowOf(env, h), Clock: h.Clock, Failed: short(h.Failed), Held: clean(h.Held)}
			for _, k := range sortedKeys(h.Health) {
				v.Health = append(v.Health, kv{K: clean(k), V: clean(h.Health[k])})
			}
			if p := h.Paused; p != nil {
				v.Marks = append(v.Marks, mark{Kind: "paused", Text: "paused" + reasonOf(p.Reason), By: clean(p.By), At: p.At})
			}
			if r := h.Result; r != nil {
				v.Result = &mark{Kind: resultKind(r.Class), Text: clean(r.Class) + reasonOf(r.Reason), At: r.At, Commit: short(r.Revision)}
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
	Err       string
}

func (s *Server) fleetJobPage(ctx context.Context, env, job string, now time.Time) (*fleetJobView, error) {
	snap, err := s.Fleet.overview(ctx, now)
	if err != nil {
		return &fleetJobView{Env: clean(env), Name: clean(job), Err: clean(err.Error())}, nil
	}
	for i := range snap {
		if snap[i].Env != env {
			continue
		}
		for _, jh := range snap[i].Jobs {
			if jh.Job != job {
				continue
			}
			v := &fleetJobView{Env: clean(env), Name: clean(job)}
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
