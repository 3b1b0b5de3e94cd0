package gitsource

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/sys/unix"
)

// checkout writes c's tree to checkouts/<commit>/ unless it is there and
// unchanged. The tree is validated whole first (validateTree: nothing is
// written for a refused tree), then written to a temp dir through an
// os.Root and renamed into place, so a checkout directory that exists is
// always complete and no entry is ever written through a symlink or
// outside the directory.
func (s *Source) checkout(c *object.Commit) (string, error) {
	root := filepath.Join(s.cfg.Dir, "checkouts")
	id := c.Hash.String()
	final := filepath.Join(root, id)
	s.mu.Lock()
	wc := s.copies[id]
	s.mu.Unlock()
	if wc == nil {
		entries, err := validateTree(c)
		if err != nil {
			return "", fmt.Errorf("checkout %s: %w", short(id), err)
		}
		wc = &workingCopy{entries: entries}
	}
	entries := wc.entries
	if _, err := os.Lstat(final); err == nil {
		// A container or a hand may have changed a working copy since it
		// was written: reuse it only when it still matches the tree. The
		// stats recorded when it was last known good say so cheaply; after
		// a restart the content is hashed once.
		err := wc.sameStats(final)
		if err != nil {
			err = verifyTree(final, entries)
		}
		if err == nil {
			s.remember(id, wc, final)
			return final, nil
		}
		if s.log != nil {
			s.log.Warn("working copy changed since checkout: writing it again", "commit", short(c.Hash.String()), "error", err)
		}
		if err := os.RemoveAll(final); err != nil {
			return "", fmt.Errorf("checkout %s: %w", short(c.Hash.String()), err)
		}
	}
	tmp := filepath.Join(root, ".tmp-"+c.Hash.String())
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("checkout %s: %w", short(c.Hash.String()), err)
	}
	err := writeTree(entries, tmp)
	if err == nil {
		err = syncTree(tmp)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("checkout %s: %w", short(c.Hash.String()), err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("checkout %s: %w", short(c.Hash.String()), err)
	}
	if d, err := os.Open(root); err == nil {
		d.Sync()
		d.Close()
	}
	s.remember(id, wc, final)
	return final, nil
}

// workingCopy is a validated tree and the stats of its working copy's
// entries when they last matched it.
type workingCopy struct {
	entries []treeEntry
	stats   map[string]entryStat
}

// entryStat is what changes when anything changes a file: the inode and
// the change time (which no one can set back), with size and mode.
type entryStat struct {
	ino, size int64
	ctime     int64
	mode      fs.FileMode
}

func statOf(fi fs.FileInfo) entryStat {
	st := entryStat{size: fi.Size(), mode: fi.Mode()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino, st.ctime = int64(sys.Ino), sys.Ctim.Nano()
	}
	return st
}

// remember records the stats of a working copy known to match its tree.
// A recorded workingCopy is never changed (a poll and the jobs' load may
// read it at once): a new one replaces it.
func (s *Source) remember(id string, wc *workingCopy, dir string) {
	stats, err := readStats(dir)
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.copies == nil {
		s.copies = map[string]*workingCopy{}
	}
	s.copies[id] = &workingCopy{entries: wc.entries, stats: stats}
	s.mu.Unlock()
}

// readStats lstat's every entry under dir (and dir itself), through an
// os.Root.
func readStats(dir string) (map[string]entryStat, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	stats := map[string]entryStat{}
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		stats[p] = statOf(fi)
		return nil
	})
	return stats, err
}

// sameStats says whether dir looks exactly as when its stats were
// recorded: the same entries, none changed.
func (wc *workingCopy) sameStats(dir string) error {
	if wc.stats == nil {
		return errors.New("no stats recorded")
	}
	now, err := readStats(dir)
	if err != nil {
		return err
	}
	if len(now) != len(wc.stats) {
		return errors.New("entries were added or removed")
	}
	for p, st := range now {
		if wc.stats[p] != st {
			return fmt.Errorf("%s changed", p)
		}
	}
	return nil
}

// writeTree writes validated entries under dir, every operation relative to
// an os.Root of dir: a path that would leave it (through "..", or a symlink
// written earlier) fails instead of touching the host.
func writeTree(entries []treeEntry, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, e := range entries {
		name := filepath.FromSlash(e.path)
		switch e.mode {
		case filemode.Dir:
			if err := root.Mkdir(name, 0o755); err != nil {
				return err
			}
		case filemode.Symlink:
			target, err := blobBytes(e.blob)
			if err != nil {
				return err
			}
			// The link's target is data: it may point anywhere, which is
			// why everything that later reads the working copy does so
			// through an os.Root too.
			if err := root.Symlink(string(target), name); err != nil {
				return err
			}
		default:
			perm := os.FileMode(0o644)
			if e.mode == filemode.Executable {
				perm = 0o755
			}
			if err := writeBlob(root, name, perm, e.blob); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeBlob(root *os.Root, name string, perm os.FileMode, b *object.Blob) error {
	out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, perm)
	if err != nil {
		return err
	}
	r, err := b.Reader()
	if err != nil {
		out.Close()
		return err
	}
	defer r.Close()
	if _, err := io.Copy(out, io.LimitReader(r, b.Size)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func blobBytes(b *object.Blob) ([]byte, error) {
	r, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, b.Size))
}

// verifyTree says whether dir still holds exactly entries: the same
// names, kinds, executable bits, symlink targets and blob hashes (the tree
// hash, compared entry by entry), and nothing else. It reads through an
// os.Root, so a symlink swapped in cannot make it read the host.
func verifyTree(dir string, entries []treeEntry) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	want := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := filepath.FromSlash(e.path)
		want[name] = true
		fi, err := root.Lstat(name)
		if err != nil {
			return err
		}
		switch e.mode {
		case filemode.Dir:
			if !fi.IsDir() {
				return fmt.Errorf("%s is no longer a directory", e.path)
			}
		case filemode.Symlink:
			if fi.Mode()&fs.ModeSymlink == 0 {
				return fmt.Errorf("%s is no longer a symlink", e.path)
			}
			got, err := root.Readlink(name)
			if err != nil {
				return err
			}
			target, err := blobBytes(e.blob)
			if err != nil {
				return err
			}
			if got != string(target) {
				return fmt.Errorf("%s points elsewhere", e.path)
			}
		default:
			if !fi.Mode().IsRegular() || fi.Size() != e.blob.Size || (fi.Mode()&0o100 != 0) != (e.mode == filemode.Executable) {
				return fmt.Errorf("%s changed", e.path)
			}
			if err := sameBlob(root, name, e.blob); err != nil {
				return fmt.Errorf("%s: %w", e.path, err)
			}
		}
	}
	// Nothing may have been added.
	extra := ""
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != "." && !want[filepath.FromSlash(p)] {
			extra = p
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return err
	}
	if extra != "" {
		return fmt.Errorf("%s was added", extra)
	}
	return nil
}

// sameBlob compares a file's git blob hash with b's.
func sameBlob(root *os.Root, name string, b *object.Blob) error {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	h := newBlobHasher(b.Size)
	if _, err := io.Copy(h, io.LimitReader(f, b.Size+1)); err != nil {
		return err
	}
	if h.Sum() != b.Hash {
		return errors.New("content changed")
	}
	return nil
}

// syncTree flushes everything written under dir in one syncfs(2) call:
// thousands of per-file fsyncs made a checkout of 2,000 files take seconds.
func syncTree(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return unix.Syncfs(int(d.Fd()))
}

// Prune removes working copies of commits not in keep (the live revision
// and those kept for rollback) and leftovers of interrupted checkouts, and
// compacts the object store when it passed its threshold.
func (s *Source) Prune(keep ...string) error {
	root := filepath.Join(s.cfg.Dir, "checkouts")
	entries, err := os.ReadDir(root)
	if err != nil {
		return fmt.Errorf("prune checkouts: %w", err)
	}
	for _, e := range entries {
		if slices.Contains(keep, e.Name()) {
			continue
		}
		s.mu.Lock()
		delete(s.copies, e.Name())
		s.mu.Unlock()
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			return fmt.Errorf("prune checkouts: %w", err)
		}
	}
	s.storeMu.Lock()
	defer s.storeMu.Unlock()
	return s.retain(keep) // store.go: the object store follows
}

func newBlobHasher(size int64) plumbing.Hasher { return plumbing.NewHasher(plumbing.BlobObject, size) }
