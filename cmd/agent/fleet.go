package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/user"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/engine"
	"berth.dev/berth/fleet"
	"berth.dev/berth/fleet/fleetjobs"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/jobs"
	"berth.dev/berth/reconcile"
)

// The fleet (docs/fleet.md): with a `fleet:` block, each env's agent
// coordinates with the other hosts that run it through etcd. Without one
// nothing here runs, and no etcd client is ever made.

// newFleet makes the agent's fleet client, or nil without a fleet block.
// It does not wait for etcd: the agent starts and serves while etcd is
// down.
func newFleet(cfg *Config, log hclog.Logger) (*fleet.Client, error) {
	if cfg.Fleet == nil {
		return nil, nil
	}
	return fleet.New(*cfg.Fleet, fleet.Options{Log: log})
}

// withFleetJobs is where the fleet client reaches env's job scheduler:
// run_on: one jobs once per fleet per scheduled time, through the
// fleetjobs adapter (jobs.Fleet). It is called only when a fleet is
// configured.
func withFleetJobs(s *jobs.Scheduler, c *fleet.Client) {
	s.Fleet = fleetjobs.Adapter{C: c}
}

// wireFleet makes env's agent coordinate through the fleet: its pass
// asks the fleet before deploying (reconcile.Fleet), its progress and
// results are published as this host's state, and its job scheduler gets
// the fleet (withFleetJobs).
func wireFleet(r *envRuntime, d hostDeps, name string) {
	r.agent.Fleet = d.fleet
	r.pub = newHostPublisher(d.fleet, name, r.dir, d.cfg.journalOf(name), d.eng)
	onProgress, onPass := r.agent.OnProgress, r.agent.OnPass
	r.agent.OnProgress = func(p reconcile.Progress) {
		onProgress(p)
		r.pub.progress(p)
	}
	r.agent.OnPass = func(p reconcile.Pass) {
		onPass(p)
		r.pub.passEnded(p)
	}
	withFleetJobs(r.sched, d.fleet)
	r.pub.publish()
}

// watchFleetControl triggers a check of every env at once when its
// fleet-wide pause, retry or rollback changes, instead of at the next
// poll.
func watchFleetControl(ctx context.Context, c *fleet.Client, rs []*envRuntime, trigger func()) {
	for _, r := range rs {
		go func() {
			first := true
			for range c.WatchControl(ctx, r.name) {
				if !first {
					r.log.Info("fleet control changed: checking now")
					trigger()
				}
				first = false
			}
		}()
	}
}

// hostPublisher composes what this host publishes about one env (its
// live revision with author and subject, the deploy in flight and its
// phase, what it waits for, the last result, held and failed marks, its
// services' health, berth's version) from the agent's hooks, and hands
// it to the fleet client, which writes it to etcd when it changed.
type hostPublisher struct {
	c   *fleet.Client
	env string
	dir string // the env's state directory
	jr  *reconcile.Journal
	eng *engine.Engine

	mu      sync.Mutex
	st      fleet.HostState
	listing bool // a health listing is in flight
}

func newHostPublisher(c *fleet.Client, env, dir string, jr *reconcile.Journal, eng *engine.Engine) *hostPublisher {
	p := &hostPublisher{c: c, env: env, dir: dir, jr: jr, eng: eng}
	p.st.Version = version
	p.fromState()
	return p
}

// fromState reads the marks state.json holds: live, failed, held, paused.
func (p *hostPublisher) fromState() {
	st, err := reconcile.LoadState(p.dir)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case st.Live == nil:
		p.st.Live = nil
	case p.st.Live == nil || p.st.Live.Revision != st.Live.Commit:
		p.st.Live = &fleet.Commit{Revision: st.Live.Commit}
		if rec := lastDeployOf(p.jr, st.Live.Commit); rec != nil {
			p.st.Live.Author, p.st.Live.Subject = rec.Author, rec.Subject
		}
	}
	p.st.Failed = ""
	if st.Failed != nil {
		p.st.Failed = st.Failed.Commit
	}
	p.st.Held = ""
	switch {
	case st.Hold != nil:
		p.st.Held = fmt.Sprintf("rolled back to %.12s", st.Hold.Commit)
	case st.FleetHeld != nil:
		p.st.Held = fmt.Sprintf("%.12s halted fleet-wide: %s", st.FleetHeld.Commit, st.FleetHeld.Reason)
	}
	p.st.Paused = nil
	if st.Pause != nil {
		p.st.Paused = &fleet.PauseInfo{By: st.Pause.By, At: st.Pause.At, Reason: st.Pause.Reason}
	}
}

// lastDeployOf is the journal's newest record of commit that names its
// author (the live revision's deploy).
func lastDeployOf(jr *reconcile.Journal, commit string) *reconcile.Record {
	recs, err := jr.List()
	if err != nil {
		return nil
	}
	for i := range recs {
		if recs[i].Commit == commit && (recs[i].Author != "" || recs[i].Subject != "") {
			return &recs[i]
		}
	}
	return nil
}

func (p *hostPublisher) publish() {
	p.mu.Lock()
	st := p.st
	if st.Health != nil {
		st.Health = maps.Clone(st.Health)
	}
	p.mu.Unlock()
	p.c.Publish(p.env, st)
}

// progress notes the pass's step (a deploy phase, or what it waits for).
func (p *hostPublisher) progress(pr reconcile.Progress) {
	p.mu.Lock()
	was := p.st.Deploy
	switch {
	case slices.Contains(deployPhases, pr.Phase) || pr.Phase == reconcile.PhaseFleet:
		p.st.Deploy = &fleet.Deploy{Revision: pr.Commit, Phase: pr.Phase, Started: pr.Started}
	default:
		p.st.Deploy = nil
	}
	changed := p.st.Waiting != pr.Waiting || (was == nil) != (p.st.Deploy == nil) ||
		was != nil && (was.Phase != p.st.Deploy.Phase || was.Revision != p.st.Deploy.Revision)
	p.st.Waiting = pr.Waiting
	p.mu.Unlock()
	if changed {
		p.publish()
	}
}

// passEnded notes how a pass ended, reads the marks it left in
// state.json, and the services' health.
func (p *hostPublisher) passEnded(ps reconcile.Pass) {
	r := ps.Record
	p.mu.Lock()
	p.st.Deploy, p.st.Waiting = nil, ""
	class := "ok"
	switch r.Result {
	case reconcile.ResultFailed:
		class = "verdict"
	case reconcile.ResultOutage:
		class = "outage"
	case reconcile.ResultHeld:
		class = "held"
	case reconcile.ResultInterrupted:
		class = "interrupted"
	}
	if r.Result == reconcile.ResultOutage && strings.HasPrefix(r.Reason, "waiting for etcd") {
		p.st.Waiting = "waiting for etcd"
	}
	at := r.Finished
	if p.st.Result != nil && p.st.Result.Class == class && p.st.Result.Revision == r.Commit && p.st.Result.Reason == r.Reason {
		at = p.st.Result.At // the same result again: no new write
	}
	p.st.Result = &fleet.Result{Revision: r.Commit, Class: class, Reason: oneLine(r.Reason), At: at}
	list := !p.listing && p.eng != nil
	p.listing = p.listing || list
	p.mu.Unlock()
	p.fromState()
	p.mu.Lock()
	if r.Author != "" && p.st.Live != nil && p.st.Live.Revision == r.Commit {
		p.st.Live.Author, p.st.Live.Subject = r.Author, r.Subject
	}
	p.mu.Unlock()
	p.publish()
	if list {
		go p.health()
	}
}

// health lists the env's containers (bounded like berth status) and
// publishes each service's health.
func (p *hostPublisher) health() {
	defer func() { p.mu.Lock(); p.listing = false; p.mu.Unlock() }()
	ctx, cancel := context.WithTimeout(context.Background(), statusDockerTimeout)
	defer cancel()
	ms, err := p.eng.List(ctx, p.env)
	if err != nil {
		return
	}
	h := map[string]string{}
	for _, m := range ms {
		if m.OneOff {
			continue
		}
		s := m.Health
		if s == "" {
			s = m.State
		}
		if old, ok := h[m.Service]; ok && old != s {
			s = old + "," + s
		}
		h[m.Service] = s
	}
	p.mu.Lock()
	p.st.Health = h
	p.mu.Unlock()
	p.publish()
}

// operator names who runs a CLI command: the sudo user or the user, at
// this host.
func operator() string {
	name := os.Getenv("SUDO_USER")
	if name == "" {
		if u, err := user.Current(); err == nil {
			name = u.Username
		}
	}
	if name == "" {
		name = "unknown"
	}
	if h, err := os.Hostname(); err == nil {
		name += "@" + h
	}
	return name
}

// fleetCache is /api/fleet and the hosts-by-revision metric: the fleet's
// hosts, read from etcd at most every fleetCacheFor.
type fleetCache struct {
	c     *fleet.Client
	names []string

	mu   sync.Mutex
	at   time.Time
	data []fleetEnvJSON
	err  error
}

const fleetCacheFor = 10 * time.Second

// fleetEnvJSON is one env of `berth fleet status --format json` and
// /api/fleet.
type fleetEnvJSON struct {
	Env      string              `json:"env"`
	Hosts    []fleet.HostStatus  `json:"hosts"`
	Paused   *fleet.PauseInfo    `json:"paused,omitempty"`
	Rollback *fleet.RollbackInfo `json:"rollback,omitempty"`
	Halts    []fleet.Halt        `json:"halts,omitempty"`
	Good     *fleet.Good         `json:"good,omitempty"`
	// Migrations are the fleet's migration records, newest first.
	Migrations []fleet.MigrationState `json:"migrations,omitempty"`
}

func (f *fleetCache) get(ctx context.Context) ([]fleetEnvJSON, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.at.IsZero() && time.Since(f.at) < fleetCacheFor {
		return f.data, f.err
	}
	f.data, f.err = fleetData(ctx, f.c, f.names)
	f.at = time.Now()
	return f.data, f.err
}

// fleetData reads every host of each env, and the env's fleet-wide
// controls, halts and migrations.
func fleetData(ctx context.Context, c *fleet.Client, names []string) ([]fleetEnvJSON, error) {
	var out []fleetEnvJSON
	for _, env := range names {
		hosts, err := c.List(ctx, env)
		if err != nil {
			return nil, waitingForEtcdErr(err)
		}
		e := fleetEnvJSON{Env: env, Hosts: hosts}
		if ctl, err := c.Control(ctx, env); err == nil {
			e.Paused, e.Rollback = ctl.Pause, ctl.Rollback
		}
		e.Halts, _ = c.Halts(ctx, env)
		e.Good, _ = c.GoodRevision(ctx, env)
		e.Migrations, _ = c.Migrations(ctx, env)
		out = append(out, e)
	}
	return out, nil
}

func waitingForEtcdErr(err error) error {
	if failure.IsOutage(err) {
		return fmt.Errorf("etcd unreachable: %w", err)
	}
	return err
}

// hostsByRevision counts the alive hosts of each env by live revision.
func hostsByRevision(data []fleetEnvJSON) map[[2]string]int {
	out := map[[2]string]int{}
	for _, e := range data {
		for _, h := range e.Hosts {
			if !h.Alive {
				continue
			}
			rev := "none"
			if h.Live != nil {
				rev = h.Live.Revision
			}
			out[[2]string{e.Env, rev}]++
		}
	}
	return out
}
