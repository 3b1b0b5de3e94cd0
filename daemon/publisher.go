package daemon

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"berth.dev/berth/engine"
	"berth.dev/berth/fleet"
	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

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

func newHostPublisher(c *fleet.Client, env, dir string, jr *reconcile.Journal, eng *engine.Engine, version string) *hostPublisher {
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
		p.st.Held = fmt.Sprintf("%.12s halted fleet-wide: %s", st.FleetHeld.Commit, status.OneLine(st.FleetHeld.Reason))
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

// Progress notes the pass's step (a deploy phase, or what it waits for).
func (p *hostPublisher) Progress(_ string, pr reconcile.Progress) {
	p.mu.Lock()
	was := p.st.Deploy
	switch {
	case pr.Phase.Deploys() || pr.Phase == reconcile.PhaseFleet:
		p.st.Deploy = &fleet.Deploy{Revision: pr.Commit, Phase: string(pr.Phase), Started: pr.Started}
	default:
		p.st.Deploy = nil
	}
	changed := p.st.Waiting != string(pr.Waiting) || (was == nil) != (p.st.Deploy == nil) ||
		was != nil && (was.Phase != p.st.Deploy.Phase || was.Revision != p.st.Deploy.Revision)
	p.st.Waiting = string(pr.Waiting)
	p.mu.Unlock()
	if changed {
		p.publish()
	}
}

// PassEnded notes how a pass ended (and what it still waits on), reads
// the marks it left in state.json, and the services' health.
func (p *hostPublisher) PassEnded(_ string, ps reconcile.Pass) {
	r := ps.Record
	p.mu.Lock()
	p.st.Deploy, p.st.Waiting = nil, string(ps.Waiting)
	res := passResult(p.dir, ps)
	if was := p.st.Result; was != nil && was.Class == res.Class && was.Revision == res.Revision && was.Reason == res.Reason && was.RolledBack == res.RolledBack {
		res.At = was.At // the same result again: no new write
	}
	p.st.Result = &res
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
	ctx, cancel := context.WithTimeout(context.Background(), status.DockerTimeout)
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

// passResult is the result a pass ended with, as the host publishes it.
// A deploy that changed the host and was undone is marked rolled back:
// the forge's status and the fleet's page say "rolled back on <host>",
// not "refused".
func passResult(dir string, ps reconcile.Pass) fleet.Result {
	r := ps.Record
	rev, class, reason := refusal(dir, ps)
	return fleet.Result{Revision: rev, Class: class, Reason: reason, RolledBack: rev == r.Commit && len(r.Undone) > 0, At: r.Finished}
}

// refusal is the host's result for a pass: how it ended, except that a
// pass which kept the live revision because a verdict refuses the head
// (failed here, or halted fleet-wide) reports that refusal: a failed
// canary must not read "ok".
func refusal(dir string, ps reconcile.Pass) (rev, class, reason string) {
	r := ps.Record
	rev, class, reason = r.Commit, ps.Result.Label(), status.OneLine(r.Reason)
	if !ps.HeadRefused || class != "ok" {
		return rev, class, reason
	}
	st, err := reconcile.LoadState(dir)
	switch {
	case err != nil:
	case st.Failed != nil && st.Failed.Commit == ps.Head:
		return ps.Head, reconcile.ResultFailed.Label(), status.OneLine(st.Failed.Reason)
	case st.FleetHeld != nil && st.FleetHeld.Commit == ps.Head:
		return ps.Head, reconcile.ResultHeld.Label(), status.OneLine(st.FleetHeld.Reason)
	}
	return rev, class, reason
}
