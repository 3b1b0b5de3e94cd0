package forge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/backoff"
)

// Poster sets commit statuses (*Client fits).
type Poster interface {
	SetStatus(ctx context.Context, sha string, s Status) error
}

// ReporterOptions shape a Reporter.
type ReporterOptions struct {
	// Context names the status; "{env}" is replaced by the env (default
	// "berth/{env}").
	Context string
	// TargetURL is linked from every status (the status page), if any.
	TargetURL string
	// ProgressGap is the least time between two posts of a commit still
	// pending (default 15 s): progress ("live on 7/10 hosts") is
	// coalesced, a final state is posted at once.
	ProgressGap time.Duration
	Log         hclog.Logger
}

// Reporter posts the commit statuses of envs in the background, off every
// deploy's path. Update only records the wanted state (latest wins) and
// returns; Run posts what changed, one request at a time. A forge that is
// down or limiting is waited out with backoff (or until the time it
// named) while updates keep coalescing, so the number of requests follows
// the number of changes, never the number of passes or hosts.
type Reporter struct {
	forge Poster
	opts  ReporterOptions
	log   hclog.Logger
	now   func() time.Time

	mu       sync.Mutex
	envs     map[string]*envStatuses
	until    time.Time // no post before (backoff, rate limit)
	failures int
	kick     chan struct{}
	posts    atomic.Int64
}

type envStatuses struct {
	target  string // the commit reported last
	commits map[string]*commitStatus
	seq     int
}

type commitStatus struct {
	want, posted Status
	hasPosted    bool
	postedAt     time.Time
	seq          int // order of the last update, for pruning
	// replaced: a newer commit became the env's target after this one.
	replaced bool
}

// maxCommits bounds the commits remembered per env.
const maxCommits = 32

// NewReporter returns a reporter posting through p.
func NewReporter(p Poster, o ReporterOptions) *Reporter {
	if o.Context == "" {
		o.Context = "berth/{env}"
	}
	if o.ProgressGap <= 0 {
		o.ProgressGap = 15 * time.Second
	}
	if o.Log == nil {
		o.Log = hclog.NewNullLogger()
	}
	return &Reporter{forge: p, opts: o, log: o.Log.Named("forge"), now: time.Now, envs: map[string]*envStatuses{}, kick: make(chan struct{}, 1)}
}

// Posts is how many statuses the reporter has sent.
func (r *Reporter) Posts() int64 { return r.posts.Load() }

// Update sets the status wanted for commit of env. It never blocks. A
// newer commit of the env supersedes one still pending: that one gets a
// status saying so. A commit that a newer one replaced as the env's
// target is not updated again: with a fleet, a host still finishing it
// after another started the newer one makes it look like the target
// again (Target goes by the latest event), and it must not take the
// status back nor call the newer one superseded. It reports whether the
// update was taken.
func (r *Reporter) Update(env, commit string, st State, description string) bool {
	if !shaRe.MatchString(commit) {
		return false
	}
	r.mu.Lock()
	e := r.envs[env]
	if e == nil {
		e = &envStatuses{commits: map[string]*commitStatus{}}
		r.envs[env] = e
	}
	if c := e.commits[commit]; c != nil && c.replaced {
		r.mu.Unlock()
		return false
	}
	e.seq++
	if old := e.commits[e.target]; e.target != "" && e.target != commit && old != nil {
		old.replaced = true
		if old.want.State == Pending {
			d := "not deployed: superseded by " + commit[:12]
			if strings.HasPrefix(old.want.Description, "live on ") && !strings.HasPrefix(old.want.Description, "live on 0/") {
				d += " (was " + old.want.Description + ")"
			}
			old.want = r.status(env, Superseded, d)
			old.seq = e.seq
		}
	}
	e.target = commit
	c := e.commits[commit]
	if c == nil {
		c = &commitStatus{}
		e.commits[commit] = c
	}
	c.want, c.seq = r.status(env, st, description), e.seq
	e.prune()
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return true
}

// Forget drops what the reporter knows of env, posted or not: the agent
// lost the env's reporter role, and a state it had not posted yet must
// not overwrite the new holder's.
func (r *Reporter) Forget(env string) {
	r.mu.Lock()
	delete(r.envs, env)
	r.mu.Unlock()
}

func (r *Reporter) status(env string, st State, d string) Status {
	return Status{State: st, Context: strings.ReplaceAll(r.opts.Context, "{env}", env), Description: d, TargetURL: r.opts.TargetURL}
}

// prune forgets the oldest commits whose status is posted.
func (e *envStatuses) prune() {
	for len(e.commits) > maxCommits {
		oldest, seq := "", 0
		for sha, c := range e.commits {
			if sha != e.target && c.hasPosted && c.posted == c.want && (oldest == "" || c.seq < seq) {
				oldest, seq = sha, c.seq
			}
		}
		if oldest == "" {
			return
		}
		delete(e.commits, oldest)
	}
}

// job is one status to post.
type job struct {
	env, commit string
	st          Status
}

// Run posts until ctx ends.
func (r *Reporter) Run(ctx context.Context) {
	for {
		r.mu.Lock()
		j, wait := r.next(r.now())
		r.mu.Unlock()
		if j != nil {
			err := r.forge.SetStatus(ctx, j.commit, j.st)
			r.posts.Add(1)
			r.mu.Lock()
			r.done(*j, err)
			r.mu.Unlock()
			continue
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// next picks the status to post now, final states first, or says how
// long until one is due (0: none is).
func (r *Reporter) next(now time.Time) (*job, time.Duration) {
	if now.Before(r.until) {
		return nil, r.until.Sub(now)
	}
	var best *job
	bestFinal := false
	var wait time.Duration
	for _, env := range sortedKeys(r.envs) {
		e := r.envs[env]
		for _, sha := range sortedKeys(e.commits) {
			c := e.commits[sha]
			if c.hasPosted && c.posted == c.want {
				continue
			}
			final := c.want.State != Pending
			if !final && c.hasPosted && c.posted.State == Pending {
				if due := c.postedAt.Add(r.opts.ProgressGap); now.Before(due) {
					if d := due.Sub(now); wait == 0 || d < wait {
						wait = d
					}
					continue
				}
			}
			if best == nil || (final && !bestFinal) {
				best, bestFinal = &job{env: env, commit: sha, st: c.want}, final
			}
		}
	}
	if best != nil {
		return best, 0
	}
	return nil, wait
}

// done records a post's result.
func (r *Reporter) done(j job, err error) {
	var c *commitStatus
	if e := r.envs[j.env]; e != nil { // nil: forgotten meanwhile
		c = e.commits[j.commit]
	}
	var rl *RateLimitedError
	switch {
	case err == nil:
		r.failures = 0
	case Refused(err) && !Unauthorized(err):
		// Sending it again will not help: it is dropped (a newer
		// state is still posted). A refused token waits below for
		// its fix.
		r.log.Warn("forge refused a commit status", "env", j.env, "commit", j.commit, "error", err)
	case errors.As(err, &rl):
		r.until = rl.Until
		return
	default:
		r.failures++
		r.until = r.now().Add(forgeRetry.Delay(r.failures))
		if r.failures == 1 && Unauthorized(err) {
			r.log.Error("forge refused the token: statuses wait for a working one", "env", j.env, "commit", j.commit, "error", err)
		} else if r.failures == 1 {
			r.log.Warn("forge unreachable: statuses wait", "env", j.env, "commit", j.commit, "error", err)
		} else {
			r.log.Debug("forge still unreachable", "error", err, "failures", r.failures)
		}
		return
	}
	if c != nil {
		c.posted, c.hasPosted, c.postedAt = j.st, true, r.now()
	}
}

// forgeRetry is the pace of posts while the forge is down: 5 s doubling
// to 10 min, ±10 % jitter.
var forgeRetry = backoff.Policy{Min: 5 * time.Second, Max: 10 * time.Minute, Jitter: 0.1}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
