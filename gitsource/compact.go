package gitsource

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"berth.dev/berth/internal/atomicfile"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Compact rewrites the store now, whatever its size (tests, benchmarks).
func (s *Source) Compact() error {
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	return s.compact()
}

// compact rewrites the store as one pack of the retained revisions. The
// caller holds s.storeMu.
func (s *Source) compact() error {
	storePath := filepath.Join(s.cfg.Dir, "store.git")
	packDir := filepath.Join(storePath, "objects", "pack")
	st := s.store.Storer

	// 1. What to keep: the retained commits the store has.
	wanted := slices.Concat(s.retained.Keep, s.retained.Recent)
	ref := plumbing.NewRemoteReferenceName("origin", s.cfg.Branch)
	if r, err := st.Reference(ref); err == nil {
		wanted = append(wanted, r.Hash().String())
	}
	commits := map[plumbing.Hash]*object.Commit{}
	for _, c := range wanted {
		h := plumbing.NewHash(c)
		if _, ok := commits[h]; ok || h.IsZero() {
			continue
		}
		if co, err := object.GetCommit(st, h); err == nil {
			commits[h] = co
		}
	}
	if r, err := st.Reference(ref); err == nil && !s.cfg.AllowRewrites {
		s.historyWindow(r.Hash(), commits)
	}
	objs := map[plumbing.Hash]struct{}{}
	var shallow []plumbing.Hash
	for h, c := range commits {
		objs[h] = struct{}{}
		if err := walkTree(st, c.TreeHash, objs); err != nil {
			return fmt.Errorf("walk %s: %w", short(h.String()), err)
		}
		for _, p := range c.ParentHashes {
			if _, ok := commits[p]; !ok {
				shallow = append(shallow, h)
				break
			}
		}
	}
	if len(objs) == 0 {
		return nil // nothing fetched yet
	}
	slices.SortFunc(shallow, func(a, b plumbing.Hash) int { return strings.Compare(a.String(), b.String()) })
	hook("walked")

	old, err := packNames(packDir)
	if err != nil {
		return err
	}

	// 2. One new pack beside the old ones, synced before anything refers to
	// it alone.
	hashes := make([]plumbing.Hash, 0, len(objs))
	for h := range objs {
		hashes = append(hashes, h)
	}
	pw, ok := st.(storer.PackfileWriter)
	if !ok {
		return errors.New("the store cannot write packs")
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return err
	}
	packHash, err := packfile.NewEncoder(&hookWriter{w: w}, st, false).Encode(hashes, 10)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write pack: %w", err)
	}
	hook("pack-written")
	name := "pack-" + packHash.String()
	for _, f := range []string{name + ".pack", name + ".idx", ""} {
		if err := syncPath(filepath.Join(packDir, f)); err != nil {
			return fmt.Errorf("sync pack: %w", err)
		}
	}
	hook("pack-synced")

	// 3. The shallow list: the retained commits whose parents are gone.
	var b strings.Builder
	for _, h := range shallow {
		b.WriteString(h.String() + "\n")
	}
	if err := atomicfile.WriteFile(filepath.Join(storePath, "shallow"), []byte(b.String()), 0o600); err != nil {
		return err
	}
	hook("shallow-written")

	// 4. The old packs go, each pack before its index (an index without a
	// pack is ignored and cleaned at the next open; the reverse would be
	// unreadable).
	for _, p := range old {
		if p == name {
			continue
		}
		if err := os.Remove(filepath.Join(packDir, p+".pack")); err != nil {
			return err
		}
		hook("old-pack-removed")
		if err := os.Remove(filepath.Join(packDir, p+".idx")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := syncPath(packDir); err != nil {
		return err
	}
	hook("old-packs-removed")

	// 5. A fresh handle: go-git caches the pack indexes it loaded, and the
	// remembered working copies hold blobs read through the old one (they
	// are validated again, from the new store, on their next use).
	repo, err := openStore(storePath)
	if err != nil {
		return err
	}
	if c, ok := s.store.Storer.(io.Closer); ok {
		c.Close()
	}
	s.store = repo
	s.mu.Lock()
	s.copies = nil
	s.mu.Unlock()
	return nil
}

// historyWindow adds the commits within HistoryDepth generations of the
// branch head. The history check fetches to that depth: a store cut shorter
// would make the server send the missing generations again on every fetch
// (git deepens a shallow boundary to the depth asked for), so they stay.
func (s *Source) historyWindow(head plumbing.Hash, commits map[plumbing.Hash]*object.Commit) {
	level := []plumbing.Hash{head}
	seen := map[plumbing.Hash]bool{}
	for depth := 0; depth < s.cfg.HistoryDepth && len(level) > 0 && len(seen) < 4*s.cfg.HistoryDepth; depth++ {
		var next []plumbing.Hash
		for _, h := range level {
			if seen[h] {
				continue
			}
			seen[h] = true
			c, err := object.GetCommit(s.store.Storer, h)
			if err != nil {
				continue // beyond the shallow boundary
			}
			commits[h] = c
			next = append(next, c.ParentHashes...)
		}
		level = next
	}
}

// walkTree adds tree and everything under it to objs; subtrees already seen
// are not walked again.
func walkTree(st storer.EncodedObjectStorer, tree plumbing.Hash, objs map[plumbing.Hash]struct{}) error {
	if _, ok := objs[tree]; ok {
		return nil
	}
	t, err := object.GetTree(st, tree)
	if err != nil {
		return err
	}
	objs[tree] = struct{}{}
	for _, e := range t.Entries {
		switch e.Mode {
		case filemode.Dir:
			if err := walkTree(st, e.Hash, objs); err != nil {
				return err
			}
		case filemode.Submodule:
			// A gitlink names a commit of another repository: not stored.
		default:
			objs[e.Hash] = struct{}{}
		}
	}
	return nil
}

// packNames lists "pack-<hash>" of the packs in dir.
func packNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".pack"); ok && strings.HasPrefix(n, "pack-") {
			names = append(names, n)
		}
	}
	return names, nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// hookWriter lets a test kill the process while the pack is half written.
type hookWriter struct {
	w       io.Writer
	written int64
}

func (h *hookWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.written += int64(n)
	if h.written > 0 && h.written-int64(n) == 0 {
		hook("pack-partial")
	}
	return n, err
}
