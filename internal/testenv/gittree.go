package testenv

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// TreeEntry is one raw entry of a hand-built Git tree. Entries are written
// as given, in order: names, duplicates and modes that git itself would
// refuse to commit are the point (a hostile config repository).
type TreeEntry struct {
	Name    string
	Mode    filemode.FileMode // default Regular, or Dir when Tree is set
	Content string            // blob content; a symlink's target
	Tree    []TreeEntry       // entries of a directory
}

// CommitTree commits a tree built with go-git plumbing on top of the
// branch head and pushes it. The test server does not fsck pushes, like a
// Git server with receive.fsckObjects off, so the tree arrives as built.
// The work tree's index is left as it was: a later CommitFiles commits the
// index's tree plus its own files.
func (r *GitRepo) CommitTree(t testing.TB, msg string, entries []TreeEntry) string {
	t.Helper()
	repo, err := git.PlainOpen(r.work)
	if err != nil {
		t.Fatal(err)
	}
	st := repo.Storer
	treeHash := writeTestTree(t, st, entries)
	var parents []plumbing.Hash
	if ref, err := repo.Reference(plumbing.NewBranchReferenceName(r.Branch), true); err == nil {
		parents = append(parents, ref.Hash())
	}
	sig := object.Signature{Name: "berth test", Email: "test@berth.invalid", When: time.Now()}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: treeHash, ParentHashes: parents}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(r.Branch), h)); err != nil {
		t.Fatal(err)
	}
	runGit(t, r.work, "push", "-q", "origin", "HEAD:refs/heads/"+r.Branch)
	return h.String()
}

func writeTestTree(t testing.TB, st storer.EncodedObjectStorer, entries []TreeEntry) plumbing.Hash {
	t.Helper()
	tree := &object.Tree{}
	for _, e := range entries {
		var h plumbing.Hash
		mode := e.Mode
		if e.Tree != nil || mode == filemode.Dir {
			h = writeTestTree(t, st, e.Tree)
			mode = filemode.Dir
		} else {
			if mode == 0 {
				mode = filemode.Regular
			}
			obj := st.NewEncodedObject()
			obj.SetType(plumbing.BlobObject)
			w, err := obj.Writer()
			if err != nil {
				t.Fatal(err)
			}
			w.Write([]byte(e.Content))
			w.Close()
			if h, err = st.SetEncodedObject(obj); err != nil {
				t.Fatal(err)
			}
		}
		tree.Entries = append(tree.Entries, object.TreeEntry{Name: e.Name, Mode: mode, Hash: h})
	}
	// go-git's Tree.Encode refuses unsorted and malformed entries; a
	// hostile tree is neither sorted nor well-formed, so encode it by hand.
	obj := st.NewEncodedObject()
	obj.SetType(plumbing.TreeObject)
	w, err := obj.Writer()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range tree.Entries {
		fmt.Fprintf(w, "%o %s\x00", e.Mode, e.Name)
		w.Write(e.Hash[:])
	}
	w.Close()
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
