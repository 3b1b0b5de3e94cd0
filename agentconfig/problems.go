package agentconfig

import (
	"strings"
)

// Problem is one thing wrong with the config, named by its field:
// "repo.pol_interval: unknown key (did you mean poll_interval?)".
type Problem struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// Problems are every problem of a config, in the order of the file and
// then of the sections: one list, each on its own line.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = "  " + p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects a section's problems.
type problems struct{ list Problems }

func (ps *problems) add(field, msg string) {
	ps.list = append(ps.list, Problem{Field: field, Message: msg})
}

// addErr adds every line of err, each "field: message" as written by a
// section that validates itself (fleet.Config.Validate).
func (ps *problems) addErr(err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		field, msg, ok := strings.Cut(line, ": ")
		if !ok || strings.Contains(field, " ") {
			field, msg = "", line
		}
		ps.add(field, msg)
	}
}
