// Package promotion opens promotion pull requests (DESIGN.md §9,
// docs/forge.md): an env whose config says `x-berth.promote: {to: prod,
// after: 30m}` and that has been live and healthy on all its hosts for 30
// minutes gets a pull request giving prod its image digests, as `berth
// promote` does, with the `berth plan` of that change as its body. A newer
// healthy revision updates the same pull request; a rollback closes it,
// with a comment saying why. Merging it is the promotion, and a person
// does it: berth never merges, and pushes only to its own
// berth/promote-<from>-<to> branch.
//
// A Promoter watches the statuses its env's reporter posts (Observe), so
// with a fleet it acts only on the agent holding the reporter role.
package promotion

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/envs"
	"berth.dev/berth/forge"
	"berth.dev/berth/internal/backoff"
)

// Forge is what a promotion needs of the forge (*forge.Client fits).
type Forge interface {
	FindPR(ctx context.Context, head, base string) (*forge.PR, error)
	OpenPR(ctx context.Context, p forge.NewPR) (*forge.PR, error)
	UpdatePR(ctx context.Context, number int, title, body string) error
	ClosePR(ctx context.Context, number int, why string) error
}

// Committer writes the promotion's commit (*forge.Client fits).
type Committer interface {
	CommitFiles(ctx context.Context, cm forge.Commit) (string, error)
}

// Checkout is a revision's working copy: the directory holding envs/
// (the agent config's repo.path inside it), that path inside the
// repository ("" at its root), and the commit's subject.
type Checkout func(ctx context.Context, rev string) (dir, repoPath, subject string, err error)

// Options of a Promoter.
type Options struct {
	Env    string // the source env
	Branch string // the config repository's branch: the PR's base
	Log    hclog.Logger
}

// Promoter opens, updates and closes one env's promotion PR.
type Promoter struct {
	forge    Forge
	commits  Committer
	checkout Checkout
	opts     Options
	log      hclog.Logger
	now      func() time.Time

	mu       sync.Mutex
	rev      string            // the revision the env's status is about
	healthy  time.Time         // since when rev is live everywhere (zero: not)
	specRev  string            // the revision spec was read from
	spec     *envs.PromoteSpec // its x-berth.promote (nil: none)
	promoted string            // the revision the open PR proposes
	declined string            // a revision whose PR a rollback closed
	failed   string            // the last revision seen failed or held
	closing  string            // why to close the PR ("" : no)
	checked  bool              // a close was tried since the start
	retry    time.Time         // no forge call before this (an outage)
	failures int
	kick     chan struct{}
}

// New returns a promoter of opts.Env.
func New(f Forge, c Committer, checkout Checkout, o Options) *Promoter {
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	return &Promoter{forge: f, commits: c, checkout: checkout, opts: o, log: o.Log.Named("promote").With("env", o.Env), now: time.Now, kick: make(chan struct{}, 1)}
}

// SetSpec records the env's x-berth.promote at its live revision rev.
func (p *Promoter) SetSpec(rev string, spec *envs.PromoteSpec) {
	p.mu.Lock()
	p.specRev, p.spec = rev, spec
	p.mu.Unlock()
	p.wake()
}

// Observe is the env's status as the reporter posts it. Success starts
// (or keeps) the healthy time of rev; anything pending restarts it; a
// failure or a hold — a rollback on this env — closes the open PR.
func (p *Promoter) Observe(rev string, st forge.State, description string) {
	p.mu.Lock()
	switch st {
	case forge.Success:
		if rev != p.rev || p.healthy.IsZero() {
			p.rev, p.healthy = rev, p.now()
		}
	case forge.Pending:
		p.rev, p.healthy = rev, time.Time{}
	case forge.Failure, forge.Error:
		p.rev, p.healthy = rev, time.Time{}
		// Once per failed revision: a PR this agent opened, or one
		// an agent before a restart may have (the first failure looks).
		if p.failed != rev && (p.promoted != "" || !p.checked) {
			p.closing = description
		}
		p.failed = rev
	}
	p.mu.Unlock()
	p.wake()
}

// Reset forgets the env's status: the agent lost the env's reporter role
// (another agent watches it now), so it proposes and closes nothing from
// what it saw before, until it observes again.
func (p *Promoter) Reset() {
	p.mu.Lock()
	p.rev, p.healthy, p.closing, p.failed = "", time.Time{}, "", ""
	p.mu.Unlock()
}

func (p *Promoter) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run acts until ctx ends: it closes the PR after a rollback, and
// proposes the healthy revision once it has been so for the spec's after.
func (p *Promoter) Run(ctx context.Context) {
	for {
		wait := p.step(ctx)
		var fire <-chan time.Time
		var t *time.Timer
		if wait > 0 {
			t = time.NewTimer(wait)
			fire = t.C
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-p.kick:
		case <-fire:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// step does what is due and says how long until something may be (0:
// nothing until the next Observe or SetSpec).
func (p *Promoter) step(ctx context.Context) time.Duration {
	p.mu.Lock()
	now := p.now()
	if now.Before(p.retry) {
		defer p.mu.Unlock()
		return p.retry.Sub(now)
	}
	closing, spec, rev := p.closing, p.spec, p.rev
	due := time.Time{}
	if spec != nil && p.specRev == rev && !p.healthy.IsZero() && p.promoted != rev && p.declined != rev {
		due = p.healthy.Add(spec.After)
	}
	p.mu.Unlock()
	switch {
	case closing != "":
		err := p.closePR(ctx, rev, closing)
		p.settle(err, func() {
			p.closing, p.checked = "", true
			if p.promoted != "" {
				p.declined, p.promoted = p.promoted, ""
			}
		})
		return p.next()
	case !due.IsZero() && !now.Before(due):
		err := p.propose(ctx, rev, spec)
		p.settle(err, func() { p.promoted = rev })
		return p.next()
	case !due.IsZero():
		return due.Sub(now)
	}
	return 0
}

// next is the wait before the next step: none (step again at once to see
// what remains) unless an outage set a retry time.
func (p *Promoter) next() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.retry.Sub(p.now()); d > 0 {
		return d
	}
	return time.Millisecond
}

// settle applies a forge call's result: done on success or a refusal (it
// would be refused again: logged, and left until the state changes), a
// retry with backoff on an outage or a refused token (its file is read
// again on each try).
func (p *Promoter) settle(err error, done func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rl *forge.RateLimitedError
	switch {
	case err == nil:
		p.failures = 0
		done()
	case errors.Is(err, errNothing):
		done()
	case forge.Refused(err) && !forge.Unauthorized(err):
		p.log.Warn("promotion refused", "error", err)
		done()
	case errors.As(err, &rl):
		p.retry = rl.Until
	default:
		p.failures++
		p.retry = p.now().Add(forgeRetry.Delay(p.failures))
		p.log.Warn("promotion waits for the forge", "error", err, "failures", p.failures)
	}
}

// forgeRetry is the pace of forge calls while the forge is down: 5 s
// doubling to 10 min.
var forgeRetry = backoff.Policy{Min: 5 * time.Second, Max: 10 * time.Minute, Jitter: 0.1}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
