package gitsource

import (
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Export writes the tree of rev (a commit id, branch, tag, "HEAD~1",
// "origin/main": what git rev-parse reads) of the local repository at
// repoDir into dst, which must not exist, with the same checks as an
// agent's working copy (validateTree, writeTree): a hostile tree is
// refused before anything is written. It is for commands that read a
// revision without a host (berth plan --from --to on a CI runner); the
// repository is only read.
func Export(repoDir, rev, dst string) (*Revision, error) {
	repo, err := git.PlainOpenWithOptions(repoDir, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open repository %s: %w", repoDir, err)
	}
	if strings.HasPrefix(rev, "-") {
		return nil, fmt.Errorf("resolve %q: not a revision", rev)
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", rev, err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, fmt.Errorf("read commit %s: %w", short(h.String()), err)
	}
	entries, err := validateTree(c)
	if err != nil {
		return nil, err
	}
	if err := writeTree(entries, dst); err != nil {
		return nil, fmt.Errorf("write the tree of %s: %w", short(h.String()), err)
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	return &Revision{Commit: h.String(), Dir: dst, Author: c.Author.Name, Subject: subject, Time: c.Committer.When}, nil
}
