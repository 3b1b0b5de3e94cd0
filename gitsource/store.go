package gitsource

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"berth.dev/berth/internal/atomicfile"
)

// The object store stays bounded. Every fetch adds one packfile (go-git
// never repacks), and a shallow fetch on top of the last one keeps every
// commit ever fetched, so left alone the store grows with each deploy and
// object lookups slow down as packs pile up. When the store passes a
// threshold, compact rewrites it in place as one pack holding only the
// retained revisions — the commits the agent keeps (live, failed, held and
// those kept for rollback, given to Prune), the last RecentRevisions commits
// handed out as working copies (any of them may be a `berth rollback REV`
// target), and the fetched branch head with the HistoryDepth generations
// the history check fetches anyway — each with its whole tree, and nothing
// older: the commits whose parents are dropped are marked shallow.
//
// Compaction runs only between fetches (the store lock) and is ordered so
// that a crash at any point loses nothing: the new pack is written and
// synced beside the old ones before the shallow list is replaced
// (atomically) and only then are the old packs removed, .pack before .idx.
// openStore clears what a crash can leave: temp packs and indexes without
// a pack.
const (
	// DefaultMaxPacks is how many packs the store holds at most: it is
	// compacted when it reaches that many (git's gc.autoPackLimit is 50;
	// fewer keeps lookups flat).
	DefaultMaxPacks = 16
	// objectCacheBytes bounds go-git's cache of decoded objects (its
	// default, 96 MiB, is more than a config repo needs resident).
	objectCacheBytes = 8 << 20
)

// compactMinBytes: below this size only the pack count matters (a
// variable for benchmarks).
var compactMinBytes int64 = 1 << 20

// RecentRevisions is how many of the last commits handed out as working
// copies stay in the store, beside the kept ones (a variable for tests).
var RecentRevisions = 100

// retainedFile lists, under Config.Dir, what compaction keeps.
const retainedFile = "retained.json"

type retained struct {
	Keep   []string `json:"keep"`   // as last given to Prune
	Recent []string `json:"recent"` // handed out, oldest first
}

// storeHook, when set (tests), is called after each step of a compaction;
// a test kills the process there.
var storeHook func(step string)

func hook(step string) {
	if storeHook != nil {
		storeHook(step)
	}
}

// openStore opens (creating if needed) the bare object store at path, after
// removing what an interrupted fetch or compaction left behind.
func openStore(path string) (*git.Repository, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if _, err := git.PlainInit(path, true); err != nil {
			return nil, err
		}
	}
	if err := cleanPackDir(filepath.Join(path, "objects", "pack")); err != nil {
		return nil, err
	}
	st := filesystem.NewStorage(osfs.New(path), cache.NewObjectLRU(objectCacheBytes))
	return git.Open(st, nil)
}

// cleanPackDir removes temp packs (a fetch or compaction killed while
// writing) and indexes whose pack is gone (killed between the two removes).
// A pack without its index cannot be read by go-git: go-git writes the index
// first and we remove the pack first, so that state is never left.
func cleanPackDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	for _, e := range entries {
		n := e.Name()
		stale := strings.HasPrefix(n, "tmp_") ||
			strings.HasSuffix(n, ".idx") && !have[strings.TrimSuffix(n, ".idx")+".pack"]
		if stale {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("clean %s: %w", dir, err)
			}
		}
	}
	return nil
}

// StoreStats describes the object store (for metrics and the soak).
type StoreStats struct {
	Packs int
	Bytes int64 // packs and indexes
	// largest pack's size: compaction also runs when the packs added since
	// the last one outweigh it.
	largest int64
}

// StoreStats reads the pack directory.
func (s *Source) StoreStats() (StoreStats, error) {
	return packStats(filepath.Join(s.cfg.Dir, "store.git", "objects", "pack"))
}

func packStats(dir string) (StoreStats, error) {
	var st StoreStats
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue
		}
		switch filepath.Ext(e.Name()) {
		case ".pack":
			st.Packs++
			st.largest = max(st.largest, fi.Size())
			st.Bytes += fi.Size()
		case ".idx":
			st.Bytes += fi.Size()
		}
	}
	return st, nil
}

func (s *Source) maxPacks() int {
	if s.cfg.MaxPacks > 0 {
		return s.cfg.MaxPacks
	}
	return DefaultMaxPacks
}

// needsCompaction: as many packs as allowed (so the next fetch cannot
// pass the bound), or (past a floor) the packs fetched since
// the last compaction outweigh the compacted one.
func (s *Source) needsCompaction() bool {
	st, err := s.StoreStats()
	if err != nil {
		return false
	}
	return st.Packs >= s.maxPacks() || st.Packs > 1 && st.Bytes > compactMinBytes && st.Bytes-st.largest > st.largest
}

// loadRetained reads retained.json; a missing or unreadable file is an
// empty list (compaction then keeps only the branch head and what the next
// Prune names, never less than the working copies in use).
func (s *Source) loadRetained() {
	b, err := os.ReadFile(filepath.Join(s.cfg.Dir, retainedFile))
	if err != nil {
		return
	}
	var r retained
	if json.Unmarshal(b, &r) == nil {
		s.retained = r
	}
}

func (s *Source) saveRetained() error {
	b, _ := json.Marshal(s.retained)
	return atomicfile.WriteFile(filepath.Join(s.cfg.Dir, retainedFile), b, 0o600)
}

// noteRevision records commit as handed out. Polls that hand out the same
// commit again write nothing.
func (s *Source) noteRevision(commit string) error {
	r := &s.retained
	if n := len(r.Recent); n > 0 && r.Recent[n-1] == commit {
		return nil
	}
	r.Recent = slices.DeleteFunc(r.Recent, func(c string) bool { return c == commit })
	r.Recent = append(r.Recent, commit)
	if len(r.Recent) > RecentRevisions {
		r.Recent = slices.Clone(r.Recent[len(r.Recent)-RecentRevisions:])
	}
	return s.saveRetained()
}

// retain records the commits the agent keeps and compacts the store when it
// passed its threshold. Called by Prune, after a deploy: never during a
// fetch, and off the path from merge to live.
func (s *Source) retain(keep []string) error {
	k := slices.Sorted(slices.Values(keep))
	k = slices.Compact(k)
	if !slices.Equal(k, s.retained.Keep) {
		s.retained.Keep = k
		if err := s.saveRetained(); err != nil {
			return err
		}
	}
	return s.maintain()
}

// maintain compacts the store if it needs it. The caller holds s.storeMu.
func (s *Source) maintain() error {
	if !s.needsCompaction() {
		return nil
	}
	before, _ := s.StoreStats()
	if err := s.compact(); err != nil {
		return fmt.Errorf("compact object store: %w", err)
	}
	if s.log != nil {
		after, _ := s.StoreStats()
		s.log.Info("object store compacted", "packs_before", before.Packs, "bytes_before", before.Bytes, "packs", after.Packs, "bytes", after.Bytes)
	}
	return nil
}

// maintainBeforeFetch compacts an overgrown store before a fetch adds to it,
// for when no deploy succeeded for a while (Prune compacts after each one).
// It needs to know what the agent keeps: until a Prune recorded that (an
// upgraded agent's first deploy), it leaves the store alone. A failure is
// logged: the fetch matters more.
func (s *Source) maintainBeforeFetch(deployed string) {
	if len(s.retained.Keep) == 0 {
		return
	}
	if deployed != "" && !slices.Contains(s.retained.Keep, deployed) {
		s.retained.Keep = append(slices.Clone(s.retained.Keep), deployed)
	}
	if err := s.maintain(); err != nil && s.log != nil {
		s.log.Warn("object store maintenance", "error", err)
	}
}
