package promotion

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"berth.dev/berth/envs"
	"berth.dev/berth/forge"
	"berth.dev/berth/preview"
)

// errNothing: the target env already runs the digests (nothing to
// propose), or the revision's PR was closed unmerged (declined).
var errNothing = errors.New("nothing to promote")

// marker names the revision a promotion PR proposes, in its body.
func marker(env, rev string) string { return "<!-- berth-promote " + env + " " + rev + " -->" }

var markerRe = regexp.MustCompile(`<!-- berth-promote ([a-z0-9_-]+) ([0-9a-f]{40,64}) -->`)

// propose opens or updates the PR giving spec.To the env's digests at rev.
func (p *Promoter) propose(ctx context.Context, rev string, spec *envs.PromoteSpec) error {
	env, to, head := p.opts.Env, spec.To, forge.PromoteBranch(p.opts.Env, spec.To)
	existing, err := p.forge.FindPR(ctx, head, p.opts.Branch)
	if err != nil {
		return err
	}
	if existing != nil && existing.Closed {
		if strings.Contains(existing.Body, marker(env, rev)) {
			// Closed unmerged — by a person, or a rollback before a
			// restart or a move of the role: declined.
			p.log.Info("not proposed again: its promotion PR was closed", "to", to, "commit", rev, "pr", existing.URL)
			return errNothing
		}
		existing = nil
	}
	if existing != nil && strings.Contains(existing.Body, marker(env, rev)) {
		return nil // an agent before a restart proposed this revision
	}
	dir, repoPath, subject, err := p.checkout(ctx, rev)
	if err != nil {
		return fmt.Errorf("promote %s: working copy of %s: %w", env, short(rev), err)
	}
	pr, err := envs.Promote(ctx, dir, env, to)
	if err != nil {
		return fmt.Errorf("promote %s to %s: %w", env, to, err)
	}
	if len(pr.Changes) == 0 {
		p.log.Info("nothing to promote: the target runs these digests", "to", to, "commit", rev)
		return errNothing
	}
	plan, err := planOf(ctx, dir, rev, head, to, pr)
	if err != nil {
		return err
	}
	var files []forge.FileChange
	for _, c := range pr.Changes {
		files = append(files, forge.FileChange{Path: path.Join(repoPath, c.Path), Old: c.Old, New: c.New, Executable: c.Mode&0o111 != 0})
	}
	// The subject is the repository's: not in the commit (each rewrite
	// of the branch would reference its #issues again), and a code span
	// in the title (GitLab notifies a title's mentions).
	msg := fmt.Sprintf("promote %s to %s: %s\n\n%s is live and healthy at %s.\nOpened by berth; merging it is the promotion.",
		env, to, short(rev), env, short(rev))
	if _, err := p.commits.CommitFiles(ctx, forge.Commit{Branch: head, BaseBranch: p.opts.Branch, BaseSHA: rev, Message: msg, Files: files}); err != nil {
		return err
	}
	title := fmt.Sprintf("Promote %s to %s: %s", env, to, preview.Code(forge.OneLine(subject, 120)))
	body := p.body(rev, spec, pr, plan)
	if existing != nil {
		err = p.forge.UpdatePR(ctx, existing.Number, title, body)
		p.log.Info("promotion PR updated", "to", to, "commit", rev, "pr", existing.URL, "error", err)
		return err
	}
	opened, err := p.forge.OpenPR(ctx, forge.NewPR{Head: head, Base: p.opts.Branch, Title: title, Body: body})
	if err == nil {
		p.log.Info("promotion PR opened", "to", to, "commit", rev, "pr", opened.URL)
	}
	return err
}

// planOf is the berth plan (Markdown) of the promotion: the working copy
// against a scratch copy of it with the changes applied.
func planOf(ctx context.Context, dir, rev, head, to string, pr *envs.Promotion) (string, error) {
	scratch, err := os.MkdirTemp("", "berth-promote-plan-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(scratch)
	if err := envs.CopyCheckout(scratch, dir); err != nil {
		return "", fmt.Errorf("promote: copy the working copy: %w", err)
	}
	for _, c := range pr.Changes {
		if err := os.WriteFile(filepath.Join(scratch, filepath.FromSlash(c.Path)), c.New, c.Mode); err != nil {
			return "", err
		}
	}
	rep, err := preview.CompareDirs(ctx, dir, scratch, preview.Commit{Ref: "base", ID: rev}, preview.Commit{Ref: head}, preview.Options{Envs: []string{to}})
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	err = rep.Markdown(&b)
	return b.String(), err
}

// body is the PR's description: what it does, the digests, the plan.
func (p *Promoter) body(rev string, spec *envs.PromoteSpec, pr *envs.Promotion, plan string) string {
	env := p.opts.Env
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", marker(env, rev))
	fmt.Fprintf(&b, "%s has been live and healthy on all its hosts for %s at %s. This gives %s the same image digests (`berth promote --from %s --to %s`).\n\n",
		preview.Code(env), spec.After, preview.Code(short(rev)), preview.Code(spec.To), env, spec.To)
	b.WriteString("**Merging this is the promotion**: berth never merges it. A newer healthy revision of " + preview.Code(env) + " updates it; a rollback there closes it.\n\n")
	for _, s := range pr.Promoted {
		b.WriteString("- " + preview.Code(s) + "\n")
	}
	for _, s := range pr.Skipped {
		b.WriteString("- skipped: " + preview.Code(s) + "\n")
	}
	b.WriteString("\n" + plan)
	return b.String()
}

// closePR closes the open promotion PR of the env, if any, with a comment
// saying why; the revision it proposed is not proposed again.
func (p *Promoter) closePR(ctx context.Context, rev, why string) error {
	p.mu.Lock()
	spec := p.spec
	p.mu.Unlock()
	if spec == nil {
		return nil
	}
	head := forge.PromoteBranch(p.opts.Env, spec.To)
	pr, err := p.forge.FindPR(ctx, head, p.opts.Branch)
	if err != nil || pr == nil || pr.Closed {
		return err
	}
	comment := fmt.Sprintf("%s did not take %s: %s\n\nberth closes this promotion. It opens a new one once a newer revision of %s has been live and healthy for %s.",
		preview.Code(p.opts.Env), preview.Code(short(rev)), preview.Code(why), preview.Code(p.opts.Env), spec.After)
	if err := p.forge.ClosePR(ctx, pr.Number, comment); err != nil {
		return err
	}
	if m := markerRe.FindStringSubmatch(pr.Body); m != nil && m[1] == p.opts.Env {
		p.mu.Lock()
		p.declined = m[2]
		p.mu.Unlock()
	}
	p.log.Info("promotion PR closed", "pr", pr.URL, "reason", why)
	return nil
}
