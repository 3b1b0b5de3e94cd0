package gitsource

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"berth.dev/berth/internal/failure"
)

// ErrUnsafeTree marks a commit whose tree berth refuses to write: an entry
// that could make the working copy reach outside its directory. It is a
// verdict on the commit (failure.AsVerdict): the same tree is refused
// again, so the agent waits for a new commit.
var ErrUnsafeTree = errors.New("unsafe tree refused")

// Limits on one commit's tree, checked before anything is written: a
// config repository is small, and a hostile one must not fill the disk.
const (
	maxTreeEntries = 100_000
	maxTreeBytes   = 1 << 30
	maxTreeDepth   = 64
)

// treeEntry is one file of a validated tree, in write order (a directory's
// entries after the directory).
type treeEntry struct {
	path string // slash-separated, relative to the working copy
	mode filemode.FileMode
	blob *object.Blob // nil for directories and submodules
}

// validateTree walks the whole tree of c and refuses, naming the entry, any
// name that is empty, ".", "..", ".git" in any case, or holds "/" or NUL;
// any name that appears twice in one directory (a symlink "a" and a
// directory "a" would put the directory's entries beneath the link); and
// unknown modes. Because every entry is checked and names never hold "/",
// no entry can be placed beneath a symlink. Nothing is written before the
// whole tree passed.
func validateTree(c *object.Commit) ([]treeEntry, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("read tree: %w", err)
	}
	w := &treeWalk{}
	if err := w.walk(tree, "", 0); err != nil {
		if isUnsafe(err) {
			return nil, failure.AsVerdict(fmt.Errorf("%w: commit %s: %w", ErrUnsafeTree, short(c.Hash.String()), err))
		}
		return nil, err
	}
	return w.entries, nil
}

type treeWalk struct {
	entries []treeEntry
	bytes   int64
}

// unsafeError is a tree problem, as opposed to an object the store cannot
// read (which is not a verdict on the commit).
type unsafeError struct{ msg string }

func (e *unsafeError) Error() string { return e.msg }

func unsafe(format string, args ...any) error { return &unsafeError{fmt.Sprintf(format, args...)} }

func (w *treeWalk) walk(t *object.Tree, dir string, depth int) error {
	if depth > maxTreeDepth {
		return unsafe("%s: directories nested deeper than %d", dir, maxTreeDepth)
	}
	seen := make(map[string]bool, len(t.Entries))
	for _, e := range t.Entries {
		shown := strings.ToValidUTF8(strings.ReplaceAll(e.Name, "\x00", `\0`), "?")
		if msg := badName(e.Name); msg != "" {
			return unsafe("entry %q in %q: %s", shown, "/"+dir, msg)
		}
		if seen[e.Name] {
			return unsafe("entry %q appears twice in %q", shown, "/"+dir)
		}
		seen[e.Name] = true
		p := e.Name
		if dir != "" {
			p = dir + "/" + e.Name
		}
		if len(w.entries) >= maxTreeEntries {
			return unsafe("more than %d entries", maxTreeEntries)
		}
		switch e.Mode {
		case filemode.Dir:
			w.entries = append(w.entries, treeEntry{path: p, mode: e.Mode})
			sub, err := t.Tree(e.Name)
			if err != nil {
				return fmt.Errorf("read tree %s: %w", p, err)
			}
			if err := w.walk(sub, p, depth+1); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable, filemode.Symlink:
			f, err := t.TreeEntryFile(&e)
			if err != nil {
				return fmt.Errorf("read blob %s: %w", p, err)
			}
			b := &f.Blob
			if w.bytes += b.Size; w.bytes > maxTreeBytes {
				return unsafe("more than %d bytes of files", maxTreeBytes)
			}
			if e.Mode == filemode.Symlink && b.Size > 4096 {
				return unsafe("symlink %q: target longer than 4096 bytes", p)
			}
			w.entries = append(w.entries, treeEntry{path: p, mode: e.Mode, blob: b})
		case filemode.Submodule:
			// A gitlink has no content here; docker compose would see an
			// empty directory, and so does berth.
			w.entries = append(w.entries, treeEntry{path: p, mode: filemode.Dir})
		default:
			return unsafe("entry %q in %q: unknown mode %o", shown, "/"+dir, uint32(e.Mode))
		}
	}
	return nil
}

// badName says what is wrong with one path component of a tree, or "".
func badName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case name == "." || name == "..":
		return "names the directory itself or its parent"
	case strings.EqualFold(strings.TrimRight(name, ". "), ".git"):
		return "a .git entry would be taken for a repository"
	case strings.ContainsRune(name, '/'):
		return "holds a '/'"
	case strings.ContainsRune(name, 0):
		return "holds a NUL byte"
	}
	return ""
}

// isUnsafe reports whether err is a refusal of the tree itself.
func isUnsafe(err error) bool {
	var u *unsafeError
	return errors.As(err, &u)
}
