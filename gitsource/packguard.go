package gitsource

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Bounds on what one fetch may bring, checked on the pack's object headers
// before go-git unpacks anything. go-git's index builder reads every object
// of a pack whole into memory (and a growing buffer holds it up to twice):
// a 3 GiB blob of zeros, 3 MB on the wire, took the agent to 7.3 GB before
// tree validation could refuse it. The object headers say each object's
// size (a delta's header the size of what it makes), so a pack holding a
// bigger one is refused without inflating it.
var (
	// maxObjectBytes bounds one object: a file of the repository (GitHub
	// refuses files above 100 MiB too).
	maxObjectBytes int64 = 100 << 20
	// maxPackBytes bounds the pack as received.
	maxPackBytes int64 = 1 << 30
	// maxInflatedBytes bounds the objects of a pack, inflated, together
	// (the tree of one commit may hold 1 GiB; a fetch brings history too).
	maxInflatedBytes int64 = 4 << 30
)

// PackRefusedError is a fetched pack berth will not unpack: the commit (or
// the history fetched with it) holds an object beyond the bounds.
type PackRefusedError struct{ msg string }

func (e *PackRefusedError) Error() string { return e.msg }

func refusePack(format string, args ...any) error {
	return &PackRefusedError{fmt.Sprintf(format, args...)}
}

// guardedStorage is the object store as a fetch writes to it: a pack is
// received into a temp file in the pack directory (removed at the next
// start if the agent dies meanwhile: cleanPackDir), checked (checkPack), and only then
// handed to go-git's own pack writer.
type guardedStorage struct {
	*filesystem.Storage
	dir string
}

func (g guardedStorage) PackfileWriter() (io.WriteCloser, error) {
	if err := os.MkdirAll(g.dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(g.dir, "tmp_incoming-*")
	if err != nil {
		return nil, err
	}
	return &spool{f: f, st: g.Storage}, nil
}

type spool struct {
	f      *os.File
	st     *filesystem.Storage
	n      int64
	failed bool
}

func (s *spool) Write(p []byte) (int, error) {
	if s.n+int64(len(p)) > maxPackBytes {
		s.failed = true
		return 0, refusePack("the fetched pack is larger than %d bytes", maxPackBytes)
	}
	n, err := s.f.Write(p)
	s.n += int64(n)
	if err != nil {
		s.failed = true
	}
	return n, err
}

// Close checks the received pack and hands it to go-git: then the store
// has it, indexed, as with go-git's own writer.
func (s *spool) Close() (err error) {
	defer os.Remove(s.f.Name())
	defer s.f.Close()
	if s.failed || s.n == 0 {
		return nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkPack(s.f); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w, err := s.st.PackfileWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, s.f); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// checkPack reads a pack's object headers: an object above maxObjectBytes
// (for a delta, the object it makes) or objects above maxInflatedBytes
// together refuse it. Only deltas are inflated, to read their header
// (their inflated size counts against the total); other objects are
// skipped by inflating them to nowhere, within the total.
func checkPack(r io.ReadSeeker) error {
	sc := packfile.NewScanner(r)
	_, count, err := sc.Header()
	if err != nil {
		return err
	}
	var total int64
	add := func(n int64) error {
		if total += n; total > maxInflatedBytes {
			return refusePack("the fetched objects inflate to more than %d bytes together", maxInflatedBytes)
		}
		return nil
	}
	for range count {
		oh, err := sc.NextObjectHeader()
		if err != nil {
			return err
		}
		switch oh.Type {
		case plumbing.OFSDeltaObject, plumbing.REFDeltaObject:
			if err := add(oh.Length); err != nil {
				return err
			}
			var head deltaHead
			if _, _, err := sc.NextObject(&head); err != nil {
				return err
			}
			target, ok := head.targetSize()
			if !ok {
				return refusePack("a delta of the fetched pack has no size")
			}
			if target > maxObjectBytes {
				return refusePack("the fetched pack holds an object of %d bytes (a delta), more than the %d berth accepts for one file", target, maxObjectBytes)
			}
			if err := add(target); err != nil {
				return err
			}
		default:
			if oh.Length > maxObjectBytes {
				return refusePack("the fetched pack holds an object of %d bytes, more than the %d berth accepts for one file", oh.Length, maxObjectBytes)
			}
			if err := add(oh.Length); err != nil {
				return err
			}
		}
	}
	return nil
}

// deltaHead keeps the first bytes of a delta: the sizes of its base and of
// the object it makes, as two little-endian base-128 numbers.
type deltaHead struct {
	b []byte
}

func (d *deltaHead) Write(p []byte) (int, error) {
	if room := 32 - len(d.b); room > 0 {
		d.b = append(d.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (d *deltaHead) targetSize() (int64, bool) {
	b := d.b
	var sizes [2]int64
	for i := range sizes {
		var v int64
		shift := 0
		for {
			if len(b) == 0 || shift > 56 {
				return 0, false
			}
			c := b[0]
			b = b[1:]
			v |= int64(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
		}
		sizes[i] = v
	}
	return sizes[1], true
}

// isPackRefused says whether err is a pack the guard refused.
func isPackRefused(err error) bool {
	var pr *PackRefusedError
	return errors.As(err, &pr)
}
