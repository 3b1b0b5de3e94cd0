package preview

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"berth.dev/berth/envs"
	"berth.dev/berth/gitsource"
)

// Options of a plan.
type Options struct {
	// Envs limits the plan to these envs (default: every env).
	Envs []string
	// Load is how both revisions are loaded: the host's policy (berth
	// plan --policy AGENT_YAML), as berth validate does.
	Load envs.Options
	// Hosts is the fleet's size, to show the rollout's waves (0: the
	// rollout is shown without them).
	Hosts int
	// Path is the directory inside the repository that holds envs/ (the
	// agent's repo.path; "" its root).
	Path string
}

// Compute plans the change from rev `from` to rev `to` of the Git
// repository at repoDir. Both trees are written to a scratch directory
// (with the agent's checks on hostile trees) and removed afterwards; the
// repository itself is only read.
func Compute(ctx context.Context, repoDir, from, to string, o Options) (*Report, error) {
	scratch, err := os.MkdirTemp("", "berth-plan-")
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	defer os.RemoveAll(scratch)
	if o.Path = filepath.Clean(o.Path); o.Path != "." && !filepath.IsLocal(o.Path) {
		return nil, fmt.Errorf("plan: --path %q is not a directory inside the repository", o.Path)
	}
	fromRev, err := gitsource.Export(repoDir, from, filepath.Join(scratch, "from"))
	if err != nil {
		return nil, fmt.Errorf("plan: --from: %w", err)
	}
	toRev, err := gitsource.Export(repoDir, to, filepath.Join(scratch, "to"))
	if err != nil {
		return nil, fmt.Errorf("plan: --to: %w", err)
	}
	fromDir, _ := below(fromRev.Dir, o.Path) // not there: no env at --from
	toDir, err := below(toRev.Dir, o.Path)
	if err != nil {
		return nil, fmt.Errorf("plan: --to: %w", err)
	}
	return CompareDirs(ctx, fromDir, toDir,
		Commit{Ref: from, ID: fromRev.Commit, Subject: fromRev.Subject},
		Commit{Ref: to, ID: toRev.Commit, Subject: toRev.Subject}, o)
}

// below is the directory path inside the checkout dir, when it is one
// (symbolic links are followed only within the checkout).
func below(dir, path string) (string, error) {
	if path == "." {
		return dir, nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", err
	}
	defer root.Close()
	if fi, err := root.Stat(path); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory in this revision", path)
	}
	return filepath.Join(dir, path), nil
}

// CompareDirs plans the change between two checkouts already on disk
// (a working copy, and a copy of it with a promotion's changes), which
// the caller names with from and to.
func CompareDirs(ctx context.Context, fromDir, toDir string, from, to Commit, o Options) (*Report, error) {
	r := &Report{From: from, To: to}
	fromNames, _ := envs.List(fromDir) // no envs/ at --from: every env is new
	toNames, err := envs.List(toDir)
	if err != nil && len(fromNames) == 0 {
		return nil, fmt.Errorf("plan: no environments under envs/ at %s or %s", from.Ref, to.Ref)
	}
	names := slices.Sorted(maps.Keys(setOf(append(fromNames, toNames...))))
	if len(o.Envs) > 0 {
		for _, e := range o.Envs {
			if !slices.Contains(names, e) {
				return nil, fmt.Errorf("plan: no environment %q at %s or %s", e, from.Ref, to.Ref)
			}
		}
		names = slices.DeleteFunc(names, func(n string) bool { return !slices.Contains(o.Envs, n) })
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e := planEnv(ctx, fromDir, toDir, name, slices.Contains(fromNames, name), slices.Contains(toNames, name), o)
		if e.State == EnvUnchanged {
			r.Unchanged = append(r.Unchanged, name)
			continue
		}
		r.Envs = append(r.Envs, e)
	}
	return r, nil
}

// planEnv compares one env between the two trees.
func planEnv(ctx context.Context, fromDir, toDir, name string, inFrom, inTo bool, o Options) EnvReport {
	r := EnvReport{Env: name, State: EnvChanged}
	r.Files = changedFiles(filepath.Join(fromDir, "envs", name), filepath.Join(toDir, "envs", name))
	if !inTo {
		r.State = EnvRemoved
		r.Notes = append(r.Notes, "envs/"+name+"/ is gone: agents of this env refuse the revision and keep serving what they run")
		return r
	}
	to, err := envs.Load(ctx, toDir, name, o.Load)
	var ps envs.Problems
	switch {
	case errors.As(err, &ps):
		r.State, r.Problems = EnvInvalid, ps
		return r
	case err != nil:
		r.State, r.Error = EnvInvalid, err.Error()
		return r
	}
	var from *envs.Env
	if inFrom {
		if from, err = envs.Load(ctx, fromDir, name, o.Load); err != nil {
			r.FromError = err.Error()
			from = nil
		}
	} else {
		r.State = EnvAdded
	}
	planServices(&r, from, to)
	r.Jobs = jobChanges(from, to)
	r.Rollout = rollout(to.Rollout, o.Hosts)
	if !inFrom || len(r.Files) > 0 || len(r.Services) > 0 || len(r.Jobs) > 0 || r.FromError != "" || len(r.Notes) > 0 {
		if hasSecrets(to) && len(r.Services) > 0 {
			r.Notes = append(r.Notes, "secret values are not read here: a new version of one in Vault redeploys the services that use it, too")
		}
		return r
	}
	r.State = EnvUnchanged
	return r
}

func hasSecrets(e *envs.Env) bool {
	for _, s := range e.Services {
		if len(s.Berth.Secrets)+len(s.Berth.SecretFiles) > 0 {
			return true
		}
	}
	return false
}

func setOf(ss []string) map[string]bool {
	m := map[string]bool{}
	for _, s := range ss {
		m[s] = true
	}
	return m
}

// changedFiles lists the files that differ between two env directories
// (added, removed or changed), relative to the checkout. Symlinks compare
// by their target, never followed.
func changedFiles(fromDir, toDir string) []string {
	a, b := digests(fromDir), digests(toDir)
	var out []string
	for p, d := range b {
		if a[p] != d {
			out = append(out, p)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// digests maps each file under dir (path relative to the checkout root,
// two levels up) to a digest of its content or link target.
func digests(dir string) map[string]string {
	out := map[string]string{}
	root := filepath.Dir(filepath.Dir(dir))
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			out[rel] = "link:" + t
		case d.Type().IsRegular():
			out[rel] = fileDigest(p)
		}
		return nil
	})
	return out
}

func fileDigest(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return "unreadable"
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, io.LimitReader(f, 64<<20))
	return hex.EncodeToString(h.Sum(nil))
}
