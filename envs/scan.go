package envs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v4"
)

// rawFile is one Compose file of an environment as written, before
// compose-go merges anything: used to check paths and keys, and to say which
// file a problem is in.
type rawFile struct {
	rel   string // relative to the checkout root, slash-separated
	abs   string
	model map[string]any
}

// fileSet is every Compose file an environment is made of, bases and
// included files before the files that use them, overrides last.
type fileSet struct {
	root     string // checkout root, symlinks resolved
	main     string // rel of the environment's compose.yaml
	maxSize  int64
	maxFiles int
	files    []*rawFile
	seen     map[string]bool
}

// rel names path for humans: relative to the checkout when inside it.
func (s *fileSet) rel(path string) string {
	if r, err := filepath.Rel(s.root, path); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return path
}

// contained resolves path (relative to base) and its symlinks, and reports
// whether it stays inside the checkout: a config repo must not make the
// agent read host files such as /etc/shadow through include or env_file.
func (s *fileSet) contained(base, path string) (string, error) {
	if strings.Contains(path, "$") {
		return "", errors.New("uses interpolation; paths of include, extends and env_file must be literal so they can be checked")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, path)
	}
	path = filepath.Clean(path)
	resolved, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		resolved = path // checked lexically; the loader reports it missing
	} else if err != nil {
		return "", err
	}
	if resolved != s.root && !strings.HasPrefix(resolved, s.root+string(filepath.Separator)) {
		return "", fmt.Errorf("resolves to %s, outside the config repository", resolved)
	}
	return path, nil
}

// read parses one Compose file, enforcing the size cap before parsing.
func (s *fileSet) read(abs string) (*rawFile, error) {
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("is not a regular file")
	}
	if fi.Size() > s.maxSize {
		return nil, fmt.Errorf("is %d bytes, above the %d-byte limit for config files", fi.Size(), s.maxSize)
	}
	b, err := os.ReadFile(abs)
	if err != nil {
		return nil, err
	}
	var model map[string]any
	if err := yaml.Unmarshal(b, &model); err != nil {
		return nil, err
	}
	return &rawFile{rel: s.rel(abs), abs: abs, model: model}, nil
}

// scan reads abs and, depth first, every file it includes or extends from,
// reporting each path problem to c. Files are appended after their
// dependencies.
func (s *fileSet) scan(c *collector, abs, from, field string) {
	if s.seen[abs] {
		return
	}
	s.seen[abs] = true
	if len(s.seen) > s.maxFiles {
		c.add(from, "", field, fmt.Sprintf("more than %d files make up this environment", s.maxFiles), "flatten the include/extends chain")
		return
	}
	f, err := s.read(abs)
	if err != nil {
		c.add(s.rel(abs), "", "", err.Error(), "")
		return
	}
	dir := filepath.Dir(abs)
	for i, inc := range includePaths(f.model["include"]) {
		fld := fmt.Sprintf("include[%d]", i)
		base := dir
		if inc.projectDir != "" {
			p, err := s.contained(dir, inc.projectDir)
			if err != nil {
				c.add(f.rel, "", fld+".project_directory", err.Error(), "")
				continue
			}
			base = p
		}
		for _, p := range inc.paths {
			full, err := s.contained(dir, p)
			if err != nil {
				c.add(f.rel, "", fld, err.Error(), "include only files inside the config repository")
				continue
			}
			s.scan(c, full, f.rel, fld)
		}
		for _, e := range inc.envFiles {
			if _, err := s.contained(base, e); err != nil {
				c.add(f.rel, "", fld+".env_file", err.Error(), "")
			}
		}
	}
	services, _ := f.model["services"].(map[string]any)
	for name, v := range services {
		svc, _ := v.(map[string]any)
		if ext, ok := svc["extends"].(map[string]any); ok {
			if file, ok := ext["file"].(string); ok {
				full, err := s.contained(dir, file)
				if err != nil {
					c.add(f.rel, name, "extends.file", err.Error(), "extend only files inside the config repository")
				} else {
					s.scan(c, full, f.rel, "extends.file")
				}
			}
		}
		for _, e := range envFilePaths(svc["env_file"]) {
			if _, err := s.contained(dir, e); err != nil {
				c.add(f.rel, name, "env_file", err.Error(), "keep env files inside the config repository")
			}
		}
	}
	s.files = append(s.files, f)
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
	projectDir string
	envFiles   []string
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
			r := includeRef{paths: stringList(x["path"]), envFiles: stringList(x["env_file"])}
			r.projectDir, _ = x["project_directory"].(string)
			out = append(out, r)
		}
	}
	return out
}

// envFilePaths reads the forms `env_file:` takes: a string, or a list of
// strings and {path, required, format} mappings.
func envFilePaths(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case []any:
		for _, it := range x {
			switch y := it.(type) {
			case string:
				out = append(out, y)
			case map[string]any:
				if p, ok := y["path"].(string); ok {
					out = append(out, p)
				}
			}
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
