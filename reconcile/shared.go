package reconcile

import (
	"context"
	"slices"
	"sync"
	"time"

	"berth.dev/berth/envs"
)

// Shared is what the Agents of several environments on one host have in
// common: one config repo and one image store. Each Agent gets a View of
// it (its Source, Pruner and Load), through which
//
//   - the branch head is listed once per poll for every env: Poll lists it,
//     and the passes it starts read that listing (a pass that starts later
//     lists again);
//   - an env's prune keeps what the other envs keep or are deploying: the
//     working copies of their live, failed, held and in-flight commits, and
//     their images.
//
// Nothing else is shared: each env has its own state, journal, backoff and
// goroutine, so a failure or an outage of one never touches another.
type Shared struct {
	Source Source
	// Pruner removes images; nil: images are not pruned.
	Pruner Pruner
	// Fresh is how long a listing of the head is reused (default 2 s):
	// long enough for the passes one poll starts, short enough that a pass
	// starting later sees a newer head.
	Fresh time.Duration

	mu       sync.Mutex
	listedAt time.Time
	head     string
	headErr  error
	listing  chan struct{} // closed when the listing in flight ends
	envs     map[string]*envUse
}

// envUse is what one env holds on to.
type envUse struct {
	commits []string // kept (live, failed, held, rollback targets)
	images  []string // kept images
	current string   // the commit of the pass in flight
	using   []string // its images
}

// View is one env's access to what the envs share.
type View struct {
	Source Source
	Pruner Pruner // nil when Shared has none
	// Load wraps the env's loader: the images of the revision being
	// deployed are kept from other envs' prunes.
	Load func(ctx context.Context, rev *Revision) (*envs.Env, error)
}

// View returns env's access. load is the env's own loader.
func (s *Shared) View(env string, load func(ctx context.Context, rev *Revision) (*envs.Env, error)) View {
	s.mu.Lock()
	if s.envs == nil {
		s.envs = map[string]*envUse{}
	}
	if s.envs[env] == nil {
		s.envs[env] = &envUse{}
	}
	s.mu.Unlock()
	v := View{Source: envSource{s, env}, Load: func(ctx context.Context, rev *Revision) (*envs.Env, error) {
		e, err := load(ctx, rev)
		if e != nil {
			s.mu.Lock()
			u := s.envs[env]
			u.current, u.using = rev.Commit, imagesOf(e)
			s.mu.Unlock()
		}
		return e, err
	}}
	if s.Pruner != nil {
		v.Pruner = envPruner{s, env}
	}
	return v
}

// Keep tells the other envs' prunes what env holds on to before its own
// first prune (Agent.Kept when the agent starts).
func (s *Shared) Keep(env string, commits, images []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.envs == nil {
		s.envs = map[string]*envUse{}
	}
	if s.envs[env] == nil {
		s.envs[env] = &envUse{}
	}
	u := s.envs[env]
	u.commits, u.images = append(u.commits, commits...), append(u.images, images...)
}

// Poll lists the branch head now; the passes that start within Fresh read
// this listing. It returns the listing's error (the poller backs off on
// it; each env's pass records it as its own outage).
func (s *Shared) Poll(ctx context.Context) error {
	_, err := s.list(ctx, true)
	return err
}

// list returns a listing of the head: the last one if it is fresh (and
// not forced), the one in flight if any, else a new one.
func (s *Shared) list(ctx context.Context, force bool) (string, error) {
	fresh := s.Fresh
	if fresh <= 0 {
		fresh = 2 * time.Second
	}
	s.mu.Lock()
	for {
		if ch := s.listing; ch != nil {
			s.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			s.mu.Lock()
			if !force {
				h, err := s.head, s.headErr
				s.mu.Unlock()
				return h, err
			}
			continue
		}
		if !force && !s.listedAt.IsZero() && time.Since(s.listedAt) < fresh {
			h, err := s.head, s.headErr
			s.mu.Unlock()
			return h, err
		}
		break
	}
	ch := make(chan struct{})
	s.listing = ch
	s.mu.Unlock()
	h, err := s.Source.Head(ctx)
	s.mu.Lock()
	s.head, s.headErr, s.listedAt, s.listing = h, err, time.Now(), nil
	if ctx.Err() != nil {
		s.listedAt = time.Time{} // a cancelled listing says nothing about the repo
	}
	s.mu.Unlock()
	close(ch)
	return h, err
}

// keptCommits is every commit some env holds on to, with env's own as
// given.
func (s *Shared) keptCommits(env string, own []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.envs[env]
	u.commits, u.current = slices.Clone(own), ""
	var all []string
	for _, o := range s.envs {
		all = append(all, o.commits...)
		if o.current != "" {
			all = append(all, o.current)
		}
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// keptImages is every image some env holds on to, with env's own as given.
func (s *Shared) keptImages(env string, own []string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.envs[env]
	u.images, u.using = slices.Clone(own), nil
	var all []string
	for _, o := range s.envs {
		all = append(all, o.images...)
		all = append(all, o.using...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

func imagesOf(e *envs.Env) []string {
	var out []string
	for _, s := range e.Services {
		out = append(out, s.Config.Image)
	}
	for _, j := range e.Jobs {
		if j.Image != "" {
			out = append(out, j.Image)
		}
	}
	return out
}

type envSource struct {
	s   *Shared
	env string
}

func (v envSource) Head(ctx context.Context) (string, error) { return v.s.list(ctx, false) }

func (v envSource) Fetch(ctx context.Context, commit, deployed string) (*Revision, error) {
	v.s.mu.Lock()
	v.s.envs[v.env].current = commit // its working copy is in use from here
	v.s.mu.Unlock()
	return v.s.Source.Fetch(ctx, commit, deployed)
}

func (v envSource) Prune(keep ...string) error {
	return v.s.Source.Prune(v.s.keptCommits(v.env, keep)...)
}

type envPruner struct {
	s   *Shared
	env string
}

func (v envPruner) PruneImages(ctx context.Context, keep, candidates []string) ([]string, error) {
	all := v.s.keptImages(v.env, keep)
	var cands []string
	for _, c := range candidates {
		if !slices.Contains(all, c) {
			cands = append(cands, c)
		}
	}
	return v.s.Pruner.PruneImages(ctx, all, cands)
}
