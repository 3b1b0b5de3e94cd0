package envs

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one validation or policy finding. It names where the problem
// is (file relative to the checkout, service, field) and how to fix it.
type Problem struct {
	File    string `json:"file"`
	Service string `json:"service,omitempty"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// String renders the problem as "FILE:SERVICE:FIELD: message (hint)"; an
// empty service (a top-level field) leaves its slot empty, and a problem
// of the whole file (no service, no field) is "FILE: message". It is
// always one line: a newline or carriage return in any part (a hostile
// service name, key or value) is written as \n or \r, so no value can
// forge a line of its own ("envs/prod: ok").
func (p Problem) String() string {
	var s string
	if p.Service == "" && p.Field == "" {
		s = fmt.Sprintf("%s: %s", oneLine(p.File), oneLine(p.Message))
	} else {
		s = fmt.Sprintf("%s:%s:%s: %s", oneLine(p.File), oneLine(p.Service), oneLine(p.Field), oneLine(p.Message))
	}
	if p.Hint != "" {
		s += " (" + oneLine(p.Hint) + ")"
	}
	return s
}

var lineBreaks = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// oneLine writes line breaks as \n and \r.
func oneLine(s string) string { return lineBreaks.Replace(s) }

// Problems is every problem an environment has. Loading reports all of them
// at once so that one `berth validate` run shows everything to fix.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sorted() Problems {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		return a.Field < b.Field
	})
	return ps
}

// collector gathers problems while loading; file attribution comes from the
// raw scan of the files that make up the environment.
type collector struct {
	problems Problems
	files    *fileSet
}

func (c *collector) add(file, service, field, msg, hint string) {
	c.problems = append(c.problems, Problem{File: file, Service: service, Field: field, Message: msg, Hint: hint})
}

// service reports a problem with a service's field, attributed to the file
// that last sets that field (an override wins over the file it overrides).
func (c *collector) service(service, field, msg, hint string) {
	c.add(c.files.fileFor(service, field), service, field, msg, hint)
}

// top reports a problem with a top-level field.
func (c *collector) top(field, msg, hint string) {
	c.add(c.files.fileFor("", field), "", field, msg, hint)
}
