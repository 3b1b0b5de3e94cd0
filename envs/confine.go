package envs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// checkout is the config repository as envs reads it (DESIGN.md §7): every
// file through an os.Root of the checkout, so that neither "..", an
// absolute path nor a symlink can make berth open a host file, and with a
// byte limit that does not trust stat (files under /proc say 0 bytes).
// Paths are resolved within the checkout by hand (lstat and readlink
// through the root) only to say where a refused path leads: a refused
// path's target is never opened, and its content never appears anywhere.
type checkout struct {
	dir     string // absolute, symlinks resolved
	root    *os.Root
	maxSize int64
}

func openCheckout(dir string, maxSize int64) (*checkout, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	return &checkout{dir: abs, root: root, maxSize: maxSize}, nil
}

func (c *checkout) close() { c.root.Close() }

// rel names path for humans: relative to the checkout when inside it.
func (c *checkout) rel(path string) string {
	if r, ok := c.inside(path); ok {
		return r
	}
	return path
}

// inside returns path relative to the checkout, lexically, and whether it
// is in it.
func (c *checkout) inside(path string) (string, bool) {
	if !filepath.IsAbs(path) {
		return "", false
	}
	r, err := filepath.Rel(c.dir, filepath.Clean(path))
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// refusal is why a path may not be used, worded for a Problem; it names
// the path as written and where it leads, never what it holds.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refuse(format string, args ...any) error { return &refusal{fmt.Sprintf(format, args...)} }

// resolve follows path's symlinks without leaving the checkout: it
// returns the resolved path relative to the checkout, or a refusal naming
// where the path leads once it leaves. A missing path is fs.ErrNotExist.
func (c *checkout) resolve(path string) (string, error) {
	rel, ok := c.inside(path)
	if !ok {
		return "", refuse("resolves to %s, outside the config repository", filepath.Clean(path))
	}
	parts := splitRel(rel)
	var done []string
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		if part == ".." {
			if len(done) == 0 {
				return "", refuse("resolves to %s, outside the config repository", filepath.Join(append([]string{filepath.Dir(c.dir)}, parts...)...))
			}
			done = done[:len(done)-1]
			continue
		}
		cur := strings.Join(append(done, part), "/")
		fi, err := c.root.Lstat(filepath.FromSlash(cur))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fs.ErrNotExist
			}
			return "", refuse("cannot be read: %s", describeFSError(err))
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, part)
			continue
		}
		if hops++; hops > 40 {
			return "", refuse("too many levels of symlinks")
		}
		target, err := c.root.Readlink(filepath.FromSlash(cur))
		if err != nil {
			return "", refuse("cannot be read: %s", describeFSError(err))
		}
		if filepath.IsAbs(target) {
			// Walked as the kernel would, component by component: the
			// target must name the checkout's own directories first
			// (its path has no symlinks), and what follows, ".." included,
			// is walked within it. A lexical Clean would take
			// "/ck/link/../x" for "/ck/x" when link leads elsewhere.
			rest, ok := c.underDir(target)
			if !ok {
				return "", refuse("resolves to %s, outside the config repository", filepath.Join(append([]string{target}, parts...)...))
			}
			done, parts = nil, append(rest, parts...)
			continue
		}
		parts = append(splitRel(target), parts...)
	}
	return strings.Join(done, "/"), nil
}

// underDir returns the components of the absolute path p after the
// checkout's directory, ".." kept, when p begins with the checkout's own
// components (no ".." among them).
func (c *checkout) underDir(p string) ([]string, bool) {
	parts := splitRel(p)
	for _, d := range splitRel(c.dir) {
		if len(parts) == 0 || parts[0] != d {
			return nil, false
		}
		parts = parts[1:]
	}
	return parts, true
}

func splitRel(p string) []string {
	var out []string
	for _, s := range strings.Split(filepath.ToSlash(p), "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}

// describeFSError drops the path an fs error repeats.
func describeFSError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// readFile reads a config file: it must resolve inside the checkout to a
// regular file of at most maxSize bytes, counted while reading.
func (c *checkout) readFile(path string) ([]byte, error) {
	rel, err := c.resolve(path)
	if err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO must not wait for a writer; a regular
	// file reads the same either way.
	f, err := c.root.OpenFile(filepath.FromSlash(orDot(rel)), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, refuse("cannot be read: %s", describeFSError(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, refuse("cannot be read: %s", describeFSError(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, refuse("is not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, c.maxSize+1))
	if err != nil {
		return nil, refuse("cannot be read: %s", describeFSError(err))
	}
	if int64(len(b)) > c.maxSize {
		return nil, refuse("is above the %d-byte limit for config files", c.maxSize)
	}
	return b, nil
}

// exists reports whether path is there (not following a final symlink).
func (c *checkout) exists(path string) bool {
	rel, ok := c.inside(path)
	if !ok {
		return false
	}
	_, err := c.root.Lstat(filepath.FromSlash(orDot(rel)))
	return err == nil
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
