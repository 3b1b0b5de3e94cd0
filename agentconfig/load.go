package agentconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v4"
)

// maxConfigBytes bounds what is read of the config file.
const maxConfigBytes = 1 << 20

// Load reads the agent config at path: every problem of the file at once
// (unknown keys, values of the wrong type, then each section's checks),
// as Problems after the path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s:\n%w", path, err)
	}
	return c, nil
}

// Parse reads a config from its bytes; its error is Problems.
func Parse(b []byte) (*Config, error) {
	if len(b) > maxConfigBytes {
		return nil, Problems{{Message: fmt.Sprintf("the file is larger than %d bytes", maxConfigBytes)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, Problems{{Message: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 || root.Kind == yaml.DocumentNode || root.Tag == "!!null" {
		return nil, Problems{{Message: "the file is empty: set at least env and repo.url (docs/configuration.md)"}}
	}
	c := defaults()
	var ps problems
	checkNode(root, &c, "", &ps)
	// What decodes is decoded (a value of the wrong type keeps its
	// default), so that the sections' checks add their problems to the
	// list, except for fields already named.
	_ = root.Decode(&c)
	c.complete()
	named := map[string]bool{}
	for _, p := range ps.list {
		named[p.Field] = true
	}
	if err := c.Validate(); err != nil {
		for _, p := range err.(Problems) {
			if !named[p.Field] {
				ps.list = append(ps.list, p)
			}
		}
	}
	if len(ps.list) > 0 {
		return nil, ps.list
	}
	return &c, nil
}

// AsProblems is err's list of problems, when it is one.
func AsProblems(err error) (Problems, bool) {
	var ps Problems
	ok := errors.As(err, &ps)
	return ps, ok
}
