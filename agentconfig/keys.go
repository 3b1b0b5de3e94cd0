package agentconfig

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v4"
)

// checkNode walks the YAML node n against the Go value v will decode
// into: an unknown key is a problem (with the known key it probably
// meant), and each value that is not a mapping of known fields is decoded
// on its own, so a value of the wrong type is reported with its field's
// name rather than a line. Nothing stops at the first problem.
func checkNode(n *yaml.Node, v any, path string, ps *problems) {
	checkType(n, reflect.TypeOf(v).Elem(), path, ps)
}

var unmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

func checkType(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Tag == "!!null" {
		return // the default stays
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	custom := reflect.PointerTo(t).Implements(unmarshaler)
	switch {
	case !custom && t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ps.add(path, fmt.Sprintf("want a mapping of keys (%s), not %s", strings.Join(keysOf(t), ", "), describe(n)))
			return
		}
		fields := fieldsOf(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			f, ok := fields[k.Value]
			if !ok {
				msg := "unknown key"
				if s := suggest(k.Value, keysOf(t)); s != "" {
					msg += " (did you mean " + s + "?)"
				}
				ps.add(join(path, k.Value), msg)
				continue
			}
			checkType(val, f, join(path, k.Value), ps)
		}
	case !custom && t.Kind() == reflect.Slice && elemStruct(t.Elem()):
		if n.Kind != yaml.SequenceNode {
			ps.add(path, "want a list, not "+describe(n))
			return
		}
		for i, item := range n.Content {
			checkType(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
		}
	default:
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			ps.add(path, decodeMessage(err))
		}
	}
}

func elemStruct(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshaler)
}

// fieldsOf maps each YAML key of struct t to its field's type, with the
// keys of inline fields.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case name == "-":
			continue
		case strings.Contains(opts, "inline"):
			for k, v := range fieldsOf(f.Type) {
				out[k] = v
			}
			continue
		case name == "":
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func keysOf(t reflect.Type) []string {
	var keys []string
	for k := range fieldsOf(t) {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	return fmt.Sprintf("%q", n.Value)
}

var (
	linePrefix = regexp.MustCompile(`^line \d+: `)
	construct  = regexp.MustCompile("^cannot (?:construct|unmarshal) !!(\\w+) `(.*)` into (.+)$")
)

// decodeMessage is a decoder's error for one value, without the line
// (the field names it) and in words.
func decodeMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = linePrefix.ReplaceAllString(msg, "")
	if m := construct.FindStringSubmatch(msg); m != nil {
		want := m[3]
		switch {
		case strings.HasPrefix(want, "int"), strings.HasPrefix(want, "uint"):
			want = "a whole number"
		case want == "bool":
			want = "true or false"
		case want == "string":
			want = "a string"
		case strings.HasPrefix(want, "[]"):
			want = "a list"
		case strings.HasPrefix(want, "map["):
			want = "a mapping"
		case want == "time.Duration":
			want = "a duration (write e.g. 90s, 5m)"
		}
		return fmt.Sprintf("%q is not %s", m[2], want)
	}
	return msg
}

// suggest is the known key closest to an unknown one, when it is close
// enough to be a typo.
func suggest(key string, known []string) string {
	best, bestD := "", 0
	for _, k := range known {
		d := distance(key, k)
		if best == "" || d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" || bestD > max(2, len(key)/3) {
		return ""
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
