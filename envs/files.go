package envs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/consts"
)

// rawFile is one Compose file of an environment as written, before
// compose-go merges anything: used to check keys, and to say which file a
// problem is in.
type rawFile struct {
	rel string // relative to the checkout root, slash-separated
	abs string // symlinks resolved
	// content is what was read (through the checkout, within the limit);
	// compose-go gets these bytes for the top-level files.
	content []byte
	model   map[string]any
	// refs maps each include path and extends.file written in this file
	// to where it is written (field, service).
	refs map[string]ref
}

type ref struct{ service, field string }

// fileSet is every file an environment is made of, read through the
// checkout, in the order compose-go asked for them. It is also the
// compose-go ResourceLoader for include and extends: compose-go opens no
// Compose file berth has not resolved, contained and read first.
type fileSet struct {
	co       *checkout
	c        *collector
	main     string // rel of the environment's compose.yaml
	maxFiles int
	// files are the included and extended files in the order compose-go
	// loaded them, then the top-level files (compose.yaml, then the
	// override): a later file sets what it shares with an earlier one.
	files []*rawFile
	tops  int // how many files at the end are top-level
	byAbs map[string]*rawFile
	// bases: the directory a file's relative include and extends paths
	// are resolved against (the environment's directory for the top-level
	// files, a file's own directory otherwise, as docker compose does).
	bases map[string]string
	// last is the path Load returned most recently: compose-go asks Dir
	// about it right after.
	lastRaw, lastAbs string
}

// readCompose reads, parses and records one Compose file that passed
// containment. Problems go to the collector; a containment problem is
// also returned, so that loading stops before compose-go reads further.
func (s *fileSet) readCompose(abs, from string, at ref, top bool) (*rawFile, error) {
	if f := s.byAbs[abs]; f != nil {
		return f, nil
	}
	if len(s.files) >= s.maxFiles {
		err := refuse("more than %d files make up this environment", s.maxFiles)
		s.c.add(from, at.service, at.field, err.Error(), "flatten the include/extends chain")
		return nil, err
	}
	rel := s.co.rel(abs)
	b, err := s.co.readFile(abs)
	if err != nil {
		s.c.add(rel, "", "", err.Error(), "")
		return nil, err
	}
	model, err := parseModel(b)
	var ye *yamlErr
	switch {
	case errors.As(err, &ye):
		s.c.add(rel, "", "", ye.msg, "")
		return nil, refuse("%s: not valid YAML", rel)
	case err != nil:
		s.c.add(rel, "", "", err.Error(), "berth refuses it before loading it further")
		return nil, err
	}
	f := &rawFile{rel: rel, abs: abs, content: b, model: model, refs: map[string]ref{}}
	if top {
		s.files = append(s.files, f)
		s.tops++
	} else {
		// Before the top-level files.
		s.files = slices.Insert(s.files, len(s.files)-s.tops, f)
	}
	s.byAbs[abs] = f
	if _, ok := s.bases[abs]; !ok {
		s.bases[abs] = filepath.Dir(abs)
	}
	var refused error
	// Keys first, on the file as written: compose-go acts on some keys
	// while it loads (develop.watch paths are resolved on the host), so
	// a file with a key berth does not take never reaches it.
	if !checkFileKeys(s.c, f) {
		refused = refuse("%s: keys berth does not support", rel)
	}
	for i, inc := range includePaths(model["include"]) {
		fld := fmt.Sprintf("include[%d]", i)
		for _, p := range inc.paths {
			f.refs[p] = ref{field: fld}
		}
		// compose-go reads an include's project_directory/.env and its
		// env_file while it includes, before any hook berth has: berth
		// takes neither, so the included file's own directory is its
		// project directory, as when they are left out.
		if inc.projectDir {
			refused = refuse("include project_directory is not supported by berth")
			s.c.add(rel, "", fld+".project_directory", refused.Error(), "leave it out: an included file's directory is its project directory")
		}
		if inc.envFile {
			refused = refuse("include env_file is not supported by berth")
			s.c.add(rel, "", fld+".env_file", refused.Error(), "put the variables in the .env beside the included file")
		}
	}
	services, _ := model["services"].(map[string]any)
	for name, v := range services {
		svc, _ := v.(map[string]any)
		// compose-go expands port ranges, in time that grows with the
		// square of their size: refuse a huge one before it does. (What
		// interpolation makes of a "${VAR}" is counted as compose-go
		// interpolates it: portGuard.)
		if n := countPorts(svc["ports"]); n > maxPorts {
			refused = refuse("port ranges expand to %d mappings, more than %d", n, maxPorts)
			s.c.add(rel, name, "ports", refused.Error(), "publish the ports the service needs")
		}
		if ext, ok := svc["extends"].(map[string]any); ok {
			if file, ok := ext["file"].(string); ok {
				f.refs[file] = ref{service: name, field: "extends.file"}
			}
		}
	}
	return f, refused
}

// Accept takes every include and extends path: none goes to compose-go's
// own loader, which would open it unchecked.
func (s *fileSet) Accept(string) bool { return true }

// Load resolves an include or extends path written in the file compose-go
// is loading, checks it stays in the checkout and is a regular file,
// reads it, and returns its resolved path: compose-go then opens exactly
// the file berth checked.
func (s *fileSet) Load(ctx context.Context, p string) (string, error) {
	from, _ := ctx.Value(consts.ComposeFileKey{}).(string)
	origin := s.byAbs[from]
	at, base := ref{field: "include"}, s.bases[from]
	if origin != nil {
		if r, ok := origin.refs[p]; ok {
			at = r
		} else {
			// An extends inside a file loaded for extends: compose-go
			// still names the outer file.
			for i := len(s.files) - 1; i >= 0; i-- {
				if r, ok := s.files[i].refs[p]; ok {
					origin, at, base = s.files[i], r, s.bases[s.files[i].abs]
					break
				}
			}
		}
	}
	fromRel := s.main
	if origin != nil {
		fromRel = origin.rel
	}
	if base == "" {
		base = filepath.Dir(from)
	}
	full := p
	if !filepath.IsAbs(full) {
		full = filepath.Join(base, p)
	}
	hint := "include and extend only files inside the config repository"
	resolved, err := s.co.resolve(full)
	if err != nil {
		msg := fmt.Sprintf("%s does not exist", p)
		if r, ok := err.(*refusal); ok {
			msg = fmt.Sprintf("%s %s", p, r.msg)
			if _, in := s.co.inside(full); !in && filepath.IsAbs(p) {
				msg = fmt.Sprintf("%s is outside the config repository", p)
			}
		}
		s.c.add(fromRel, at.service, at.field, msg, hint)
		return "", refuse("%s:%s:%s: %s", fromRel, at.service, at.field, msg)
	}
	abs := filepath.Join(s.co.dir, filepath.FromSlash(resolved))
	if _, err := s.readCompose(abs, fromRel, at, false); err != nil {
		return "", err
	}
	// An included file's project directory is its own; compose-go reads
	// the .env there.
	if at.field != "extends.file" {
		if err := s.checkDotEnv(filepath.Join(filepath.Dir(abs), ".env")); err != nil {
			return "", err
		}
	}
	s.lastRaw, s.lastAbs = p, abs
	return abs, nil
}

// Dir is the directory relative paths of a loaded file are resolved
// against: its own.
func (s *fileSet) Dir(p string) string {
	if filepath.IsAbs(p) && p != s.lastAbs && p != s.lastRaw {
		return filepath.Dir(p)
	}
	return filepath.Dir(s.lastAbs)
}

// checkDotEnv refuses a .env that compose-go would read unless it is a
// contained regular file within the size limit.
func (s *fileSet) checkDotEnv(path string) error {
	if !s.co.exists(path) {
		return nil
	}
	if _, err := s.co.readFile(path); err != nil {
		s.c.add(s.co.rel(path), "", "", err.Error(), "")
		return err
	}
	return nil
}

// fileFor names the file that last sets field (its first segment) of
// service, or of the top level when service is empty.
func (s *fileSet) fileFor(service, field string) string {
	key, _, _ := strings.Cut(field, ".")
	key, _, _ = strings.Cut(key, "[")
	declared := ""
	for i := len(s.files) - 1; i >= 0; i-- {
		m := s.files[i].model
		if service != "" {
			services, _ := m["services"].(map[string]any)
			svc, ok := services[service].(map[string]any)
			if !ok {
				continue
			}
			if declared == "" {
				declared = s.files[i].rel
			}
			m = svc
		}
		if _, ok := m[key]; ok {
			return s.files[i].rel
		}
	}
	if declared != "" {
		return declared
	}
	return s.main
}

type includeRef struct {
	paths      []string
	projectDir bool
	envFile    bool
}

// includePaths reads the forms `include:` takes: a string, or a list of
// strings and {path, project_directory, env_file} mappings.
func includePaths(v any) []includeRef {
	var out []includeRef
	items, ok := v.([]any)
	if !ok {
		if s, ok := v.(string); ok {
			items = []any{s}
		}
	}
	for _, it := range items {
		switch x := it.(type) {
		case string:
			out = append(out, includeRef{paths: []string{x}})
		case map[string]any:
			_, pd := x["project_directory"]
			_, ef := x["env_file"]
			out = append(out, includeRef{paths: stringList(x["path"]), projectDir: pd, envFile: ef})
		}
	}
	return out
}

func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, it := range x {
			if s, ok := it.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
