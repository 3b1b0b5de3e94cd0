package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/hashicorp/go-hclog"

	"berth.dev/berth/internal/failure"
)

// Config says which repository and branch to watch and how.
type Config struct {
	URL    string
	Branch string
	Auth   Auth
	// Dir is where the source keeps its object store and working copies
	// (under the agent's state dir).
	Dir string
	// Timeout bounds each network call (ref listing, fetch).
	Timeout time.Duration
	// AllowRewrites accepts a new head that does not descend from the
	// deployed commit (a force push). Off by default.
	AllowRewrites bool
	// HistoryDepth is how many commits back from a new head the deployed
	// commit is looked for when rewrites are refused.
	HistoryDepth int
	// TrustedKeys is an armored OpenPGP keyring. When set, a head commit
	// that is unsigned or signed by another key is refused.
	TrustedKeys string
	// MaxPacks is how many packs the object store holds at most: it is
	// compacted when it reaches that many (store.go); 0 means
	// DefaultMaxPacks.
	MaxPacks int
}

// Source is one watched config repository.
type Source struct {
	cfg     Config
	ep      endpoint
	log     hclog.Logger
	fetches atomic.Uint64

	// copies remembers, per commit, the validated tree and how each
	// entry of its working copy looked on disk when it was written or last
	// verified (checkout.go): reuse compares stats, not contents.
	mu     sync.Mutex
	copies map[string]*workingCopy

	storeMu  sync.Mutex // the store: a fetch and a compaction never overlap
	store    *git.Repository
	retained retained
}

// Fetches is how many fetches went to the remote (for metrics).
func (s *Source) Fetches() uint64 { return s.fetches.Load() }

// Revision is a fetched commit with its working copy.
type Revision struct {
	Commit  string
	Dir     string // working copy: the commit's tree, complete
	Author  string
	Subject string
	Time    time.Time
	Signer  string // key id of a verified signature, if configured
}

// Errors a poll can end with. ErrRewrite and ErrSignature come marked as
// verdicts (internal/failure): the same head will be refused again, so the
// caller waits for a new commit instead of retrying. Every other error of
// this package (the remote unreachable, a timeout, a branch that is gone,
// authentication refused) is the world's, not the commit's: an outage.
var (
	ErrRewrite   = errors.New("history rewrite refused")
	ErrSignature = errors.New("commit signature refused")
	ErrNoBranch  = errors.New("branch not found")
)

// RetryAfterError is a transient error from a server that asked the agent
// to wait (HTTP 429 or 503 with Retry-After).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// New opens (creating if needed) the object store under cfg.Dir.
func New(cfg Config, log hclog.Logger) (*Source, error) {
	ep, err := parseEndpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Branch == "" {
		cfg.Branch = "main"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HistoryDepth <= 0 {
		cfg.HistoryDepth = 64
	}
	if _, err := ep.authMethod(cfg.Auth); err != nil {
		return nil, fmt.Errorf("repo %s: %w", ep.safe, err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "checkouts"), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", cfg.Dir, err)
	}
	storePath := filepath.Join(cfg.Dir, "store.git")
	repo, err := openStore(storePath)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", storePath, err)
	}
	s := &Source{cfg: cfg, ep: ep, log: log, store: repo}
	s.loadRetained()
	return s, nil
}

// URL is the repository URL without credentials.
func (s *Source) URL() string { return s.ep.safe }

func (s *Source) remote(st *memory.Storage) *git.Remote {
	cfg := &config.RemoteConfig{Name: "origin", URLs: []string{s.ep.url}}
	if st != nil {
		return git.NewRemote(st, cfg)
	}
	if fs, ok := s.store.Storer.(*filesystem.Storage); ok {
		// A pack is checked before go-git unpacks it (packguard.go).
		return git.NewRemote(guardedStorage{Storage: fs, dir: filepath.Join(s.cfg.Dir, "store.git", "objects", "pack")}, cfg)
	}
	return git.NewRemote(s.store.Storer, cfg)
}

// Head asks the remote for the branch head: one ref advertisement, nothing
// fetched. This is the whole cost of a poll when nothing changed.
func (s *Source) Head(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	auth, err := s.ep.authMethod(s.cfg.Auth)
	if err != nil {
		return "", fmt.Errorf("list %s: %w", s.ep.safe, err)
	}
	refs, err := s.remote(memory.NewStorage()).ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return "", s.wrap("list", err)
	}
	want := plumbing.NewBranchReferenceName(s.cfg.Branch)
	for _, r := range refs {
		if r.Name() == want {
			return r.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("list %s: %w: %s", s.ep.safe, ErrNoBranch, s.cfg.Branch)
}

// Fetch makes commit (the branch head Head returned) available as a working
// copy. When deployed is set and rewrites are refused, commit must descend
// from it. The working copy is built aside and renamed into place whole, so
// an agent killed mid-fetch never sees a half tree.
func (s *Source) Fetch(ctx context.Context, commit, deployed string) (*Revision, error) {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	hash := plumbing.NewHash(commit)
	checkHistory := deployed != "" && deployed != commit && !s.cfg.AllowRewrites
	if _, err := s.store.CommitObject(hash); err != nil {
		s.maintainBeforeFetch(deployed)
		depth := 1
		if checkHistory {
			depth = s.cfg.HistoryDepth
		}
		if err := s.fetch(ctx, depth); err != nil {
			return nil, err
		}
	}
	c, err := s.store.CommitObject(hash)
	if err != nil {
		// The branch moved again between the listing and the fetch; the
		// next poll sees the newer head.
		return nil, fmt.Errorf("fetch %s: commit %s not in the fetched branch %s (it moved meanwhile)", s.ep.safe, short(commit), s.cfg.Branch)
	}
	if checkHistory {
		if err := s.descends(c, plumbing.NewHash(deployed)); err != nil {
			return nil, failure.AsVerdict(err)
		}
	}
	rev := &Revision{Commit: commit, Author: c.Author.Name + " <" + c.Author.Email + ">", Time: c.Committer.When}
	rev.Subject, _, _ = strings.Cut(c.Message, "\n")
	if s.cfg.TrustedKeys != "" {
		if rev.Signer, err = verifySignature(c, s.cfg.TrustedKeys); err != nil {
			return nil, failure.AsVerdict(err)
		}
	}
	if rev.Dir, err = s.checkout(c); err != nil {
		return nil, err
	}
	if err := s.noteRevision(commit); err != nil && s.log != nil {
		s.log.Warn("record revision for the object store", "commit", short(commit), "error", err)
	}
	return rev, nil
}

// fetch fetches only the watched branch, to depth, without tags. Objects the
// store already has are not sent again.
func (s *Source) fetch(ctx context.Context, depth int) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	auth, err := s.ep.authMethod(s.cfg.Auth)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", s.ep.safe, err)
	}
	spec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", s.cfg.Branch, s.cfg.Branch))
	s.fetches.Add(1)
	err = s.remote(nil).FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{spec},
		Depth:    depth,
		Tags:     git.NoTags,
		Force:    true,
		Auth:     auth,
	})
	if isPackRefused(err) {
		// The commit's, not the world's: the same fetch brings the same
		// objects.
		return failure.AsVerdict(fmt.Errorf("fetch %s: %w (refused before it was unpacked)", s.ep.safe, err))
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return s.wrap("fetch", err)
	}
	return nil
}

// descends walks first and other parents from c looking for deployed, within
// what the fetch brought (HistoryDepth commits).
func (s *Source) descends(c *object.Commit, deployed plumbing.Hash) error {
	seen := map[plumbing.Hash]bool{}
	queue := []*object.Commit{c}
	for len(queue) > 0 && len(seen) < 4*s.cfg.HistoryDepth {
		cur := queue[0]
		queue = queue[1:]
		if seen[cur.Hash] {
			continue
		}
		seen[cur.Hash] = true
		for _, p := range cur.ParentHashes {
			if p == deployed {
				return nil
			}
			pc, err := s.store.CommitObject(p)
			if err != nil {
				continue // beyond the shallow boundary
			}
			queue = append(queue, pc)
		}
	}
	return fmt.Errorf("%w: %s on %s does not descend from the deployed commit %s within %d commits (force push?); set repo.allow_history_rewrites to accept it",
		ErrRewrite, short(c.Hash.String()), s.cfg.Branch, short(deployed.String()), s.cfg.HistoryDepth)
}

// wrap names the repo (without credentials) and classifies HTTP throttling.
func (s *Source) wrap(op string, err error) error {
	var ue *plumbing.UnexpectedError
	if errors.As(err, &ue) {
		var he *githttp.Err
		if errors.As(ue.Err, &he) && he.Response != nil {
			code := he.Response.StatusCode
			if code == 429 || code == 503 {
				return &RetryAfterError{
					Err:   fmt.Errorf("%s %s: %s", op, s.ep.safe, he.Response.Status),
					After: retryAfter(he.Response.Header.Get("Retry-After")),
				}
			}
		}
	}
	return fmt.Errorf("%s %s: %s", op, s.ep.safe, sanitizeText(err.Error()))
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := time.Parse(time.RFC1123, v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
