package envs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// Bounds on hashing the files an environment mounts from the config
// repository (Service.Mounted): a repo that mounts a huge tree is refused,
// not hashed for minutes.
var (
	maxMountBytes int64 = 256 << 20
	maxMountFiles       = 20_000
	maxMountTime        = time.Minute
)

// mountBudget is what is left of those bounds for one environment, and
// the bind mounts seen so far (for checkBindOverlap).
type mountBudget struct {
	ctx   context.Context
	bytes int64
	files int
	binds []envBind
}

// checkMounts checks each bind mount of a service on the path compose-go
// resolved (the one Docker gets). A source inside the config repository
// must resolve, symlinks followed within the checkout, to something in it;
// it is mounted read-only, and its content is hashed into the config hash.
// Any other source is a host path: refused unless the policy allows it,
// decided on the path as written before the host is touched, and again on
// where its symlinks lead.
func checkMounts(bad func(field, msg, hint string), files *fileSet, s *Service, p Policy, budget *mountBudget) {
	co := files.co
	cfg := &s.Config
	for i := range cfg.Volumes {
		v := &cfg.Volumes[i]
		field := fmt.Sprintf("volumes[%d]", i)
		switch v.Type {
		case types.VolumeTypeVolume, types.VolumeTypeTmpfs:
			continue
		case types.VolumeTypeBind:
		default:
			bad(field, fmt.Sprintf("volume type %q is not supported by berth yet", v.Type), "use bind, volume or tmpfs")
			continue
		}
		if v.Bind != nil {
			switch v.Bind.Propagation {
			case "", "private", "rprivate":
			default:
				bad(field, fmt.Sprintf("bind propagation %q is refused: mounts would cross between the container and the host", v.Bind.Propagation), "leave propagation out")
			}
		}
		rel, inRepo := co.inside(v.Source)
		if !inRepo {
			src := path.Clean(filepath.ToSlash(v.Source))
			if msg, hint := hostPathBlocked(src, p); msg != "" {
				bad(field, msg, hint)
				continue
			}
			// Allowed as written: a symlink under an allowed path (a
			// container that may write there can make one) must not
			// lead elsewhere. Docker is given the resolved path: no
			// symlink left for a container to swap between this check and
			// the mount.
			resolved, err := resolveHost(src)
			if err != nil {
				bad(field, fmt.Sprintf("bind mount of %s: %v", src, err), "mount the directory the service needs")
				continue
			}
			if resolved != src {
				if msg, hint := hostPathBlocked(resolved, p); msg != "" {
					bad(field, fmt.Sprintf("%s (%s resolves to %s)", msg, src, resolved), hint)
					continue
				}
				src = resolved
				v.Source = resolved
			}
			budget.binds = append(budget.binds, envBind{service: s.Name, field: field, source: src, rw: !v.ReadOnly, host: true})
			continue
		}
		resolved, err := co.resolve(v.Source)
		var r *refusal
		switch {
		case errors.Is(err, fs.ErrNotExist):
			bad(field, fmt.Sprintf("bind mount source %s does not exist in the config repository", rel), "add it to the repository, or use a named volume")
			continue
		case errors.As(err, &r):
			bad(field, fmt.Sprintf("bind mount of %s %s", rel, r.msg), "mount files of the config repository, or a host path the policy allows")
			continue
		case err != nil:
			bad(field, fmt.Sprintf("bind mount of %s: %v", rel, err), "")
			continue
		}
		if !v.ReadOnly {
			if p.AllowRWRepoMounts {
				// As written: the switch lets the repo ask for rw.
			} else if explicitRW(files, s.Name, v.Target) {
				bad(field, fmt.Sprintf("mounting %s from the config repository read-write is refused", rel), "mount it read-only (:ro), or set policy.allow_rw_repo_mounts in /etc/berth/agent.yaml")
				continue
			} else {
				v.ReadOnly = true
			}
		}
		// Docker gets the resolved path: it follows no symlink of the
		// checkout.
		v.Source = filepath.Join(co.dir, filepath.FromSlash(resolved))
		budget.binds = append(budget.binds, envBind{service: s.Name, field: field, source: v.Source, rw: !v.ReadOnly})
		d, err := treeDigest(co, resolved, budget)
		if err != nil {
			bad(field, fmt.Sprintf("read bind mount source %s: %v", rel, err), "mount a smaller part of the repository")
			continue
		}
		if s.Mounted == nil {
			s.Mounted = map[string]string{}
		}
		s.Mounted[rel] = d
	}
}

// resolveHost resolves a host path as the kernel will when Docker mounts
// it, component by component (lstat and readlink, a ".." after a symlink
// going up from where the symlink led, not lexically): what exists is
// followed, and the first missing component and the rest are kept as
// written, where a directory created later would be.
func resolveHost(p string) (string, error) {
	parts := splitRel(p)
	done := "/"
	for hops := 0; len(parts) > 0; {
		part := parts[0]
		parts = parts[1:]
		if part == ".." {
			done = filepath.Dir(done)
			continue
		}
		cur := filepath.Join(done, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return filepath.Join(append([]string{cur}, parts...)...), nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = cur
			continue
		}
		if hops++; hops > 40 {
			return "", errors.New("too many levels of symlinks")
		}
		target, err := os.Readlink(cur)
		if err != nil {
			return "", errors.New(describeFSError(err))
		}
		if filepath.IsAbs(target) {
			done = "/"
		}
		parts = append(splitRel(target), parts...)
	}
	return done, nil
}

// explicitRW says whether a file of the environment writes the service's
// mount at target as read-write: ":rw" in the short syntax, or
// read_only: false.
func explicitRW(files *fileSet, service, target string) bool {
	for _, f := range files.files {
		services, _ := f.model["services"].(map[string]any)
		svc, _ := services[service].(map[string]any)
		vols, _ := svc["volumes"].([]any)
		for _, v := range vols {
			switch x := v.(type) {
			case string:
				parts := strings.Split(x, ":")
				if len(parts) >= 3 && path.Clean(parts[len(parts)-2]) == path.Clean(target) {
					for _, o := range strings.Split(parts[len(parts)-1], ",") {
						if o == "rw" {
							return true
						}
					}
				}
			case map[string]any:
				if t, _ := x["target"].(string); path.Clean(t) == path.Clean(target) {
					if ro, ok := x["read_only"].(bool); ok && !ro {
						return true
					}
				}
			}
		}
	}
	return false
}

// treeDigest is a digest of a file, or of every entry under a directory
// (names, modes, contents; symlinks by their target, never followed), read
// through the checkout within the budget.
func treeDigest(co *checkout, rel string, b *mountBudget) (string, error) {
	h := sha256.New()
	fsys := co.root.FS()
	err := fs.WalkDir(fsys, orDot(rel), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return errors.New(describeFSError(err))
		}
		if err := b.ctx.Err(); err != nil {
			return fmt.Errorf("hashing took longer than %s", maxMountTime)
		}
		if b.files--; b.files < 0 {
			return fmt.Errorf("more than %d files are mounted from the repository", maxMountFiles)
		}
		info, err := d.Info()
		if err != nil {
			return errors.New(describeFSError(err))
		}
		r, _ := filepath.Rel(orDot(rel), p)
		fmt.Fprintf(h, "%s %o\n", filepath.ToSlash(r), info.Mode())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := co.root.Readlink(p)
			if err != nil {
				return errors.New(describeFSError(err))
			}
			fmt.Fprintf(h, "-> %s\n", target)
		case info.Mode().IsRegular():
			f, err := co.root.Open(p)
			if err != nil {
				return errors.New(describeFSError(err))
			}
			defer f.Close()
			n, err := io.Copy(h, io.LimitReader(f, b.bytes+1))
			if err != nil {
				return errors.New(describeFSError(err))
			}
			if b.bytes -= n; b.bytes < 0 {
				return fmt.Errorf("more than %d bytes are mounted from the repository", maxMountBytes)
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
