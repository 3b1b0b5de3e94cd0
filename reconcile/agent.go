package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/envs"
)

// Revision is a fetched commit of the config repo.
type Revision struct {
	Commit  string
	Dir     string // its complete working copy
	Author  string
	Subject string
	Signer  string // the key id that signed it, when signatures are verified
}

// Source is the config repository (gitsource, adapted by cmd/agent).
// Errors are outages unless marked: a rewrite or a bad signature is a
// verdict (failure.AsVerdict).
type Source interface {
	Head(ctx context.Context) (string, error)
	// Fetch returns commit's working copy; deployed is the live commit the
	// new one must descend from (empty for none).
	Fetch(ctx context.Context, commit, deployed string) (*Revision, error)
	// Prune removes the working copies of all commits but keep.
	Prune(keep ...string) error
}

// Agent is the loop body of `berth run`: one pass per poll or webhook.
type Agent struct {
	// Env names the environment in records of passes that end before it
	// is loaded.
	Env      string
	Source   Source
	Load     func(ctx context.Context, rev *Revision) (*envs.Env, error)
	Deployer *Deployer
	StateDir string
	Journal  *Journal
	Log      hclog.Logger
	// HoldUntilResume keeps a rollback in force across new commits until
	// `berth resume`; by default a new commit ends it.
	HoldUntilResume bool
	// Pruner, when set, removes images of revisions older than the newest
	// KeepRevisions successful ones (default 2: the live one and the one a
	// rollback goes back to), after each successful deploy; their working
	// copies go too.
	Pruner        Pruner
	KeepRevisions int
	// OnLive, when set, is given the live revision's environment after
	// every pass that leaves it live; the job scheduler follows it.
	OnLive func(env *envs.Env, commit string)
	// OnPass, when set, is given every pass's outcome once its state and
	// journal record are durable: metrics, notifications and the unit's
	// STATUS= are rendered from it. It must not block.
	OnPass func(Pass)
	// Fleet, when set, coordinates this env with the other hosts that run
	// it (fleet.go); nil: the host acts alone.
	Fleet Fleet
	// OnProgress, when set, is told when a pass starts and enters each of
	// its steps (the watchdog and STATUS= follow it; a fleet will publish
	// the host's phase from it). It must not block.
	OnProgress func(Progress)
	// NotifyOutageAfter is how many passes in a row an outage must end
	// before it is notified, once (default 3: with the poller's backoff
	// about half a minute; a blip of the registry pages nobody).
	NotifyOutageAfter int

	// unwritten is a pass record the journal could not take (a full
	// state dir); the next pass writes it first.
	unwritten *Record
	// attemptRead: the first pass looked for a mark a dead agent left;
	// died is what it found, carried into this agent's marks (poison.go).
	attemptRead bool
	died        *attempt
}

// LoadLive hands the live revision's environment to OnLive, from its local
// working copy (no network: jobs keep running while Git is unreachable). A
// panic while loading it is an error, never a crash at startup.
func (a *Agent) LoadLive(ctx context.Context) (err error) {
	defer recoverTo(&err, a.logger(), PhaseLoad)
	st, err := LoadState(a.StateDir)
	if err != nil || st.Live == nil || a.OnLive == nil {
		return err
	}
	rev, err := a.Source.Fetch(ctx, st.Live.Commit, "")
	if err != nil {
		return err
	}
	env, err := a.Load(ctx, rev)
	if err != nil {
		return err
	}
	a.OnLive(env, rev.Commit)
	return nil
}

// Check is one pass: it polls the config repo and makes the host match —
// the new head when it moved (unless it failed before), else the live
// revision again, which restores containers that died, vanished or were
// changed by hand. Every pass ends in finish, whichever way it ends (a
// panic included), which writes the state, the journal record and reports
// the outcome. It returns outages (Git, registry, Vault, Docker, the state
// dir) for the poller to back off on; a verdict on a new revision is
// recorded, not returned.
func (a *Agent) Check(ctx context.Context) (err error) {
	p := &pass{id: newDeployID(), started: time.Now().UTC()}
	defer func() { err = a.finish(ctx, p, err, recover()) }()
	st, err := LoadState(a.StateDir)
	if err != nil {
		return asOutage(err)
	}
	p.st, p.loaded = st, true
	if p.st.Live != nil {
		p.live = p.st.Live.Commit
	}
	if err := a.leftByTheDead(p); err != nil {
		return err
	}
	a.progress(p, PhaseList)
	head, err := a.Source.Head(ctx)
	if err != nil {
		return asOutage(err)
	}
	p.head = head
	if err := a.apply(p, head); err != nil {
		return asOutage(err)
	}
	target, since := head, p.live
	switch {
	case p.st.Hold != nil:
		// A rollback goes back in history on purpose.
		target, since = p.st.Hold.Commit, ""
	case p.st.Failed != nil && p.st.Failed.Commit == head:
		target = p.live // the head failed: keep the live revision whole
	}
	// A pause, and a fleet's word on the head (fleet.go).
	target, back, err := a.gate(ctx, p, head, target)
	if back {
		since = ""
	}
	p.target = target
	if err != nil {
		p.target = head
		return err
	}
	if target == "" {
		return nil
	}
	a.progress(p, PhaseFetch)
	rev, err := a.Source.Fetch(ctx, target, since)
	if err != nil {
		return asOutage(err) // gitsource marks a rewrite or a bad signature a verdict
	}
	p.rev = rev
	a.progress(p, PhaseLoad)
	env, err := a.Load(ctx, rev)
	if err != nil {
		var ps envs.Problems
		if errors.As(err, &ps) {
			err = fmt.Errorf("invalid config at %s:\n%w", short(target), err)
		}
		return asVerdict(err)
	}
	p.env = env
	if err := a.admit(ctx, p); err != nil {
		return err
	}
	return a.deploy(ctx, p)
}

// apply carries out a pending operator request and ends a hold the head has
// moved past (unless holds last until resume). finish saves the state, and
// only then drops the request: an agent killed in between applies it again.
func (a *Agent) apply(p *pass, head string) error {
	log := a.logger()
	req, raw, err := readRequest(a.StateDir, log)
	if err != nil {
		return err
	}
	st := &p.st
	if req != nil {
		p.request = raw
		switch req.Action {
		case "rollback":
			st.Hold = &Hold{Commit: req.Commit, Head: head, UntilNewCommit: !a.HoldUntilResume, At: time.Now().UTC()}
			log.Info("rollback requested: holding", "commit", short(req.Commit), "until_new_commit", st.Hold.UntilNewCommit)
		case "retry":
			st.Failed, st.FleetHeld = nil, nil
			log.Info("retry requested", "commit", short(head))
		case "resume":
			st.Hold, st.Pause = nil, nil
			log.Info("resume requested: following the branch again")
		case "pause":
			st.Pause = &Pause{By: req.By, At: req.At, Reason: req.Reason}
			log.Info("pause requested: the branch is not followed until berth resume", "by", req.By, "reason", req.Reason)
		default:
			log.Warn("unknown request ignored", "action", req.Action)
		}
		p.dirty = true
	}
	if st.Hold != nil && st.Hold.UntilNewCommit && head != st.Hold.Head {
		log.Info("new commit ends the rollback hold", "commit", short(head))
		st.Hold = nil
		p.dirty = true
	}
	return nil
}

func (a *Agent) deploy(ctx context.Context, p *pass) error {
	env, rev := p.env, p.rev
	d := *a.Deployer
	d.Log = a.logger().With("deploy_id", p.id)
	rec := p.newRecord(a)
	d.BeforePhase = func(phase Phase, res *Report) error {
		a.progress(p, phase)
		// Nothing changes in prepare (pulls): a pass that ends there, an
		// outage say, is counted like any other rather than journaled
		// before it starts.
		if a.Journal == nil || phase == PhasePrepare {
			return nil
		}
		if rec.Actions == nil {
			for _, act := range res.Actions {
				rec.Actions = append(rec.Actions, act.String())
			}
		}
		rec.Result, rec.Phase, rec.Phases, rec.Changed, rec.WatchUntil = ResultRunning, phase, res.Phases, res.Changed, res.WatchUntil
		rec.Steps = slices.Clone(p.steps)
		start := time.Now()
		defer func() { p.journal += time.Since(start) }()
		if err := a.Journal.Write(rec); err != nil {
			return stateDirError(a.StateDir, err) // nothing changed yet in this phase: rolled back, retried
		}
		p.written = true
		return nil
	}
	d.Progress = func() { // pulls, creates and health waits call it in parallel
		p.stageMu.Lock()
		defer p.stageMu.Unlock()
		if a.OnProgress != nil && !p.deployed {
			a.OnProgress(Progress{Commit: p.target, Phase: p.stage, Started: p.started})
		}
	}
	a.progress(p, PhasePlan)
	res, err := d.Deploy(ctx, Input{Env: env, Revision: rev.Commit, Live: p.live})
	p.stageMu.Lock()
	p.deployed = true
	p.stageMu.Unlock()
	p.res = res
	return err
}

// prune removes what only older revisions used: their images, and their
// working copies (the live revision's stays: its containers may bind-mount
// from it). A failure is logged: the next deploy tries again.
func (a *Agent) prune(ctx context.Context, st State, log hclog.Logger) {
	if a.Journal == nil {
		return
	}
	commits, keep, candidates, err := a.kept(st)
	if err != nil {
		log.Warn("prune", "error", err)
		return
	}
	if err := a.Source.Prune(commits...); err != nil {
		log.Warn("prune working copies", "error", err)
	}
	if a.Pruner == nil {
		return
	}
	removed, err := a.Pruner.PruneImages(ctx, keep, candidates)
	if err != nil {
		log.Warn("prune images", "error", err)
	}
	for _, img := range removed {
		log.Info("image pruned", "image", img)
	}
}

// kept says what the env holds on to: the commits of the newest
// KeepRevisions successful deploys and of the live, failed and held
// revisions, and those deploys' images; candidates are the images of the
// older records.
func (a *Agent) kept(st State) (commits, keep, candidates []string, err error) {
	recs, err := a.Journal.List()
	if err != nil {
		return nil, nil, nil, err
	}
	keepRevs := a.KeepRevisions
	if keepRevs <= 0 {
		keepRevs = 2
	}
	for _, r := range recs {
		if r.Result == ResultSucceeded && keepRevs > 0 {
			keep = append(keep, r.Images...)
			commits = append(commits, r.Commit)
			keepRevs--
			continue
		}
		candidates = append(candidates, r.Images...)
	}
	for _, rs := range []*RevisionState{st.Live, st.Failed} {
		if rs != nil {
			commits = append(commits, rs.Commit)
		}
	}
	if st.Hold != nil {
		commits = append(commits, st.Hold.Commit)
	}
	return commits, keep, candidates, nil
}

// Kept is what the env holds on to now (the commits and images its next
// prune keeps), for Shared.Keep when the agent starts.
func (a *Agent) Kept() (commits, images []string, err error) {
	if a.Journal == nil {
		return nil, nil, nil
	}
	st, err := LoadState(a.StateDir)
	if err != nil {
		return nil, nil, err
	}
	commits, images, _, err = a.kept(st)
	return commits, images, err
}

func (a *Agent) logger() hclog.Logger {
	if a.Log == nil {
		return hclog.NewNullLogger()
	}
	return a.Log
}

// newDeployID is time-ordered and unique: "20261123T021500.123456Z-1a2b3c".
func newDeployID() string {
	b := make([]byte, 3)
	rand.Read(b)
	return time.Now().UTC().Format("20060102T150405.000000Z") + "-" + hex.EncodeToString(b)
}
