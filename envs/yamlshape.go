package envs

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Bounds on the shape of one Compose file, checked on berth's own parse
// before compose-go sees the file: compose-go's work grows with the square
// of the nesting (it builds each node's path as a string) and ignores ctx,
// so a 100 KB file nested 9,999 levels deep cost minutes of CPU. A real
// Compose file nests about ten levels and holds a few thousand nodes.
const (
	maxYAMLDepth = 64
	// maxYAMLNodes counts nodes with aliases expanded; compose-go stops at
	// 100,000 node visits itself, after it did the expensive part.
	maxYAMLNodes = 100_000
)

// parseModel parses a Compose file as berth checks it: one YAML document
// (compose-go loads every document of a file and merges them, so a second
// one would escape every check made on the first), within maxYAMLDepth and
// maxYAMLNodes. An empty file is a nil model.
func parseModel(b []byte) (map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case err == nil:
		return nil, refuse("holds more than one YAML document")
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err)
	}
	sh := shape{memo: map[*yaml.Node]nodeShape{}}
	if s := sh.of(&doc); s.depth > maxYAMLDepth {
		return nil, refuse("is nested more than %d levels deep", maxYAMLDepth)
	} else if s.nodes > maxYAMLNodes {
		return nil, refuse("holds more than %d YAML nodes (aliases expanded)", maxYAMLNodes)
	}
	var model map[string]any
	if err := doc.Decode(&model); err != nil {
		return nil, yamlError(err)
	}
	return model, nil
}

type yamlErr struct{ msg string }

func (e *yamlErr) Error() string { return e.msg }

func yamlError(err error) error {
	return &yamlErr{strings.TrimPrefix(err.Error(), "yaml: ")}
}

type nodeShape struct{ depth, nodes int }

// shape measures nodes with aliases followed, each node once (memo): an
// alias costs what its anchor holds, without expanding it.
type shape struct{ memo map[*yaml.Node]nodeShape }

func (sh *shape) of(n *yaml.Node) nodeShape {
	if n == nil {
		return nodeShape{}
	}
	if s, ok := sh.memo[n]; ok {
		return s
	}
	// A node met again before it is measured (an alias cycle, which the
	// parser refuses anyway) counts as over the limits.
	sh.memo[n] = nodeShape{depth: maxYAMLDepth + 1, nodes: maxYAMLNodes + 1}
	s := nodeShape{depth: 1, nodes: 1}
	if n.Kind == yaml.AliasNode {
		a := sh.of(n.Alias)
		s = nodeShape{depth: a.depth, nodes: a.nodes}
	}
	for _, c := range n.Content {
		cs := sh.of(c)
		s.depth = max(s.depth, cs.depth+1)
		s.nodes = min(s.nodes+cs.nodes, maxYAMLNodes+1)
	}
	sh.memo[n] = s
	return s
}
