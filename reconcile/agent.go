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
}

// Source is the config repository (gitsource, adapted by cmd/agent).
type Source interface {
	Head(ctx context.Context) (string, error)
	// Fetch returns commit's working copy; deployed is the live commit the
	// new one must descend from (empty for none).
	Fetch(ctx context.Context, commit, deployed string) (*Revision, error)
	// Prune removes the working copies of all commits but keep.
	Prune(keep ...string) error
}

// Refusal marks errors that the same commit will always get (a rewrite, a
// bad signature, an invalid config): the agent records them and waits for
// a new commit instead of retrying.
type Refusal struct{ Err error }

func (r *Refusal) Error() string { return r.Err.Error() }
func (r *Refusal) Unwrap() error { return r.Err }

// Agent is the loop body of `berth run`: one check per poll or webhook.
type Agent struct {
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
	// every check that leaves it live; the job scheduler follows it.
	OnLive func(env *envs.Env, commit string)
	// OnDeploy, when set, is given each deploy record that changed
	// something, once it ended (metrics, notifications). It must not block.
	OnDeploy func(rec Record)
}

// LoadLive hands the live revision's environment to OnLive, from its local
// working copy (no network: jobs keep running while Git is unreachable).
func (a *Agent) LoadLive(ctx context.Context) error {
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

// Check polls the config repo and makes the host match: the new head when
// it moved (unless it failed before), else the live revision again, which
// restores containers that died, vanished or were changed by hand. It
// returns transient errors (network, engine) for the poller to back off on;
// a deploy that failed and was rolled back is recorded, not returned.
func (a *Agent) Check(ctx context.Context) error {
	log := a.logger()
	head, err := a.Source.Head(ctx)
	if err != nil {
		return err
	}
	st, err := LoadState(a.StateDir)
	if err != nil {
		return err
	}
	if err := a.apply(&st, head); err != nil {
		return err
	}
	live := ""
	if st.Live != nil {
		live = st.Live.Commit
	}
	target, since := head, live
	switch {
	case st.Hold != nil:
		// A rollback goes back in history on purpose.
		target, since = st.Hold.Commit, ""
	case st.Failed != nil && st.Failed.Commit == head:
		target = live // the head failed: keep the live revision whole
	}
	if target == "" {
		return nil
	}
	rev, err := a.Source.Fetch(ctx, target, since)
	if err == nil {
		var env *envs.Env
		if env, err = a.Load(ctx, rev); err == nil {
			return a.deploy(ctx, &st, env, rev, log)
		}
		var ps envs.Problems
		if errors.As(err, &ps) {
			err = &Refusal{Err: fmt.Errorf("invalid config at %s:\n%w", short(target), err)}
		}
	}
	var refusal *Refusal
	if !errors.As(err, &refusal) || target == live {
		return err
	}
	if st.Failed == nil || st.Failed.Commit != target {
		log.Warn("revision refused", "commit", short(target), "error", err)
		st.Failed = &RevisionState{Commit: target, At: time.Now().UTC(), Reason: err.Error()}
		return SaveState(a.StateDir, st)
	}
	return nil
}

// apply carries out a pending operator request and ends a hold the head has
// moved past (unless holds last until resume).
func (a *Agent) apply(st *State, head string) error {
	req, err := takeRequest(a.StateDir)
	if err != nil {
		return err
	}
	changed := false
	if req != nil {
		log := a.logger()
		switch req.Action {
		case "rollback":
			st.Hold = &Hold{Commit: req.Commit, Head: head, UntilNewCommit: !a.HoldUntilResume, At: time.Now().UTC()}
			log.Info("rollback requested: holding", "commit", short(req.Commit), "until_new_commit", st.Hold.UntilNewCommit)
		case "retry":
			st.Failed = nil
			log.Info("retry requested", "commit", short(head))
		case "resume":
			st.Hold = nil
			log.Info("resume requested: following the branch again")
		default:
			log.Warn("unknown request ignored", "action", req.Action)
		}
		changed = true
	}
	if st.Hold != nil && st.Hold.UntilNewCommit && head != st.Hold.Head {
		a.logger().Info("new commit ends the rollback hold", "commit", short(head))
		st.Hold = nil
		changed = true
	}
	if changed {
		return SaveState(a.StateDir, *st)
	}
	return nil
}

func (a *Agent) deploy(ctx context.Context, st *State, env *envs.Env, rev *Revision, log hclog.Logger) error {
	id := newDeployID()
	d := *a.Deployer
	d.Log = log.With("deploy_id", id)
	rec := &Record{ID: id, Env: env.Name, Commit: rev.Commit, Author: rev.Author, Subject: rev.Subject, Started: time.Now().UTC(), Result: ResultRunning}
	for _, s := range env.Services {
		if !slices.Contains(rec.Images, s.Config.Image) {
			rec.Images = append(rec.Images, s.Config.Image)
		}
	}
	for _, j := range env.Jobs {
		if j.Image != "" && !slices.Contains(rec.Images, j.Image) {
			rec.Images = append(rec.Images, j.Image) // kept from pruning
		}
	}
	d.BeforePhase = func(phase string, res *Result) error {
		if a.Journal == nil {
			return nil
		}
		if rec.Actions == nil {
			for _, act := range res.Actions {
				rec.Actions = append(rec.Actions, act.String())
			}
		}
		rec.Phase, rec.Phases = phase, res.Phases
		return a.Journal.Write(rec)
	}
	start := time.Now()
	res, err := d.Deploy(ctx, Input{Env: env, Revision: rev.Commit})
	if res != nil && res.Changed && a.Journal != nil {
		rec.Finished, rec.Phases, rec.OneShots, rec.Result = time.Now().UTC(), res.Phases, res.OneShots, ResultSucceeded
		if err != nil {
			rec.Result, rec.Reason = ResultFailed, err.Error()
			if ctx.Err() != nil {
				rec.Result = ResultInterrupted
			}
		}
		if jerr := a.Journal.Write(rec); jerr != nil {
			log.Warn("journal", "error", jerr)
		}
		a.Journal.Prune()
		if a.OnDeploy != nil {
			a.OnDeploy(*rec)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return err // shutting down: rolled back, retried on restart
		}
		if st.Live != nil && st.Live.Commit == rev.Commit {
			// Restoring the live revision failed (Vault or the engine down,
			// a container that keeps dying): not a verdict on the revision.
			// The poller backs off and the next check tries again.
			return fmt.Errorf("restore live revision %s: %w", short(rev.Commit), err)
		}
		log.Error("deploy failed and rolled back", "deploy_id", id, "commit", short(rev.Commit), "error", err)
		st.Failed = &RevisionState{Commit: rev.Commit, DeployID: id, At: time.Now().UTC(), Reason: err.Error()}
		return SaveState(a.StateDir, *st)
	}
	if a.OnLive != nil {
		a.OnLive(env, rev.Commit)
	}
	if !res.Changed && st.Live != nil && st.Live.Commit == rev.Commit {
		log.Debug("no change", "commit", short(rev.Commit))
		return nil
	}
	log.Info("deployed", "deploy_id", id, "commit", short(rev.Commit), "subject", rev.Subject, "changed", res.Changed, "duration", time.Since(start).Round(time.Millisecond))
	if st.Live == nil || st.Live.Commit != rev.Commit {
		// A new commit went live: an older failure no longer matters. (A
		// pass that only restored the live revision keeps the record of the
		// head that failed, so that head is not retried.)
		st.Failed = nil
	}
	st.Live = &RevisionState{Commit: rev.Commit, DeployID: id, At: time.Now().UTC()}
	if err := SaveState(a.StateDir, *st); err != nil {
		return err
	}
	a.prune(ctx, *st, log)
	return nil
}

// prune removes what only older revisions used: their images, and their
// working copies (the live revision's stays: its containers may bind-mount
// from it). A failure is logged: the next deploy tries again.
func (a *Agent) prune(ctx context.Context, st State, log hclog.Logger) {
	if a.Journal == nil {
		return
	}
	recs, err := a.Journal.List()
	if err != nil {
		log.Warn("prune", "error", err)
		return
	}
	keepRevs := a.KeepRevisions
	if keepRevs <= 0 {
		keepRevs = 2
	}
	var keep, candidates, commits []string
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
