package envs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// FileChange is one file a promotion rewrites.
type FileChange struct {
	Path  string // relative to the checkout
	Mode  os.FileMode
	Old   []byte
	New   []byte
	Lines []LineChange
}

// LineChange is one rewritten line (1-based).
type LineChange struct {
	Line     int
	Old, New string
}

// Promotion says what promoting one environment's digests to another does.
type Promotion struct {
	Changes  []FileChange
	Promoted []string // "service: sha256:old → sha256:new"
	Skipped  []string // services in both envs left alone, with the reason
}

// Promote computes the rewrite that gives the services of env `to` the
// image digests their namesakes have in env `from`, wherever `to` keeps
// them: in its compose files or its .env. Only the digest text changes, so
// comments and layout stay as they are. It refuses to touch files outside
// envs/<to>/ (shared by other environments), and reloads the result to make
// sure exactly the intended services changed. It writes nothing.
func Promote(ctx context.Context, dir, from, to string) (*Promotion, error) {
	src, err := Load(ctx, dir, from, Options{})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", from, err)
	}
	dst, err := Load(ctx, dir, to, Options{})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", to, err)
	}
	p := &Promotion{}
	replace := map[string]string{} // old digest → new digest
	repos := map[string]string{}   // old digest → repository promoted
	want := map[string]string{}    // service → image after promotion
	for _, s := range dst.Services {
		from := src.Service(s.Name)
		if from == nil {
			continue
		}
		oldRepo, oldDigest, okOld := splitDigest(s.Config.Image)
		newRepo, newDigest, okNew := splitDigest(from.Config.Image)
		switch {
		case !okNew:
			p.Skipped = append(p.Skipped, fmt.Sprintf("%s: not pinned by digest in %s", s.Name, src.Name))
			continue
		case !okOld:
			p.Skipped = append(p.Skipped, fmt.Sprintf("%s: not pinned by digest in %s; pin it first", s.Name, dst.Name))
			continue
		case oldRepo != newRepo:
			p.Skipped = append(p.Skipped, fmt.Sprintf("%s: repository %s in %s, %s in %s", s.Name, newRepo, src.Name, oldRepo, dst.Name))
			continue
		case oldDigest == newDigest:
			continue
		}
		if prev, ok := replace[oldDigest]; ok && prev != newDigest {
			return nil, fmt.Errorf("promote %s: services sharing digest %s in %s get different digests from %s; pin them separately first", s.Name, short(oldDigest), dst.Name, src.Name)
		}
		replace[oldDigest] = newDigest
		repos[oldDigest] = oldRepo
		want[s.Name] = newRepo + "@" + newDigest
		p.Promoted = append(p.Promoted, fmt.Sprintf("%s: %s → %s", s.Name, short(oldDigest), short(newDigest)))
	}
	if len(replace) == 0 {
		return p, nil
	}

	envDir := filepath.Join(dir, "envs", to)
	found := map[string]bool{}
	for _, name := range []string{"compose.yaml", "compose.yml", "compose.override.yaml", "compose.override.yml", ".env"} {
		path := filepath.Join(envDir, name)
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		old, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("promote: %w", err)
		}
		fc := FileChange{Path: "envs/" + to + "/" + name, Mode: fi.Mode().Perm(), Old: old}
		lines := strings.SplitAfter(string(old), "\n")
		for i, line := range lines {
			nl := line
			for o, n := range replace {
				if strings.Contains(nl, o) {
					nl = strings.ReplaceAll(nl, o, n)
					found[o] = true
				}
			}
			if nl != line {
				fc.Lines = append(fc.Lines, LineChange{Line: i + 1, Old: strings.TrimRight(line, "\n"), New: strings.TrimRight(nl, "\n")})
				lines[i] = nl
			}
		}
		if len(fc.Lines) > 0 {
			fc.New = []byte(strings.Join(lines, ""))
			p.Changes = append(p.Changes, fc)
		}
	}
	for o := range replace {
		if !found[o] {
			return nil, fmt.Errorf("promote: digest %s of %s is not written in envs/%s/ (compose files or .env); it comes from a file other environments share, which promote does not edit", short(o), to, to)
		}
	}
	followers, err := verifyPromotion(ctx, dir, to, p.Changes, dst, want, replace, repos)
	if err != nil {
		return nil, err
	}
	p.Promoted = append(p.Promoted, followers...)
	return p, nil
}

// verifyPromotion loads env `to` with the changes applied, in a scratch copy
// of the checkout, and checks that the wanted images changed and nothing
// else did, except services that share a promoted digest line for the same
// repository (a cli service using the release's digest variable, say):
// those follow, and are returned as such.
func verifyPromotion(ctx context.Context, dir, to string, changes []FileChange, before *Env, want, replace, repos map[string]string) ([]string, error) {
	scratch, err := os.MkdirTemp("", "berth-promote-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	if err := CopyCheckout(scratch, dir); err != nil {
		return nil, fmt.Errorf("promote: copy checkout: %w", err)
	}
	for _, c := range changes {
		if err := os.WriteFile(filepath.Join(scratch, c.Path), c.New, c.Mode); err != nil {
			return nil, err
		}
	}
	after, err := Load(ctx, scratch, to, Options{})
	if err != nil {
		return nil, fmt.Errorf("promote: %s would not load after the change: %w", to, err)
	}
	var followers []string
	for _, s := range before.Services {
		got := after.Service(s.Name)
		if got == nil {
			return nil, fmt.Errorf("promote: %s would lose service %s", to, s.Name)
		}
		if expect, ok := want[s.Name]; ok {
			if got.Config.Image != expect {
				return nil, fmt.Errorf("promote: %s would get image %s, not %s", s.Name, got.Config.Image, expect)
			}
			continue
		}
		if got.Config.Image == s.Config.Image {
			continue
		}
		repo, old, ok := splitDigest(s.Config.Image)
		if !ok || repos[old] != repo || got.Config.Image != repo+"@"+replace[old] {
			return nil, fmt.Errorf("promote: rewriting the digests would also change %s in %s (%s); pin it separately first", s.Name, to, s.Config.Image)
		}
		followers = append(followers, fmt.Sprintf("%s: %s → %s (shares the digest with a promoted service)", s.Name, short(old), short(replace[old])))
	}
	return followers, nil
}

// splitDigest splits "repo@sha256:…" into repo and digest.
func splitDigest(image string) (repo, digest string, ok bool) {
	if !digestRe.MatchString(image) {
		return "", "", false
	}
	i := strings.LastIndex(image, "@")
	return image[:i], image[i+1:], true
}

// short abbreviates a digest for messages: "sha256:3f1d6c6a5b2e".
func short(digest string) string {
	if len(digest) > 19 {
		return digest[:19]
	}
	return digest
}

// Diff renders the changes as a unified-style diff of the changed lines.
func (p *Promotion) Diff() string {
	var b strings.Builder
	changes := slices.Clone(p.Changes)
	slices.SortFunc(changes, func(a, b FileChange) int { return strings.Compare(a.Path, b.Path) })
	for _, c := range changes {
		fmt.Fprintf(&b, "--- a/%s\n+++ b/%s\n", c.Path, c.Path)
		for _, l := range c.Lines {
			fmt.Fprintf(&b, "@@ -%d +%d @@\n-%s\n+%s\n", l.Line, l.Line, l.Old, l.New)
		}
	}
	return b.String()
}

// CopyCheckout copies the checkout at src into dst, symlinks as symlinks,
// and leaves out .git: a scratch copy to apply a promotion's changes to
// (verifyPromotion here, the promotion PR's plan in package promotion).
func CopyCheckout(dst, src string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		}
		return nil
	})
}
