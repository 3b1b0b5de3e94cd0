package preview

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"berth.dev/berth/forge"
)

// JSON writes the report as indented JSON.
func (r *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Text writes the report for a terminal. Strings from the repository are
// flattened to one line here; the caller escapes what a terminal acts on
// (cmd/agent's termSafe).
func (r *Report) Text(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "berth plan: %s (%s) → %s (%s): %s\n", short(r.From.ID), flat(r.From.Ref), short(r.To.ID), flat(r.To.Ref), flat(r.To.Subject))
	if len(r.Envs) == 0 {
		b.WriteString("no environment changes\n")
	}
	for _, e := range r.Envs {
		fmt.Fprintf(b, "\nenv %s: %s\n", e.Env, e.State)
		for _, f := range e.Files {
			fmt.Fprintf(b, "  file %s\n", flat(f))
		}
		if e.Error != "" {
			fmt.Fprintf(b, "  error: %s\n", flat(e.Error))
		}
		for _, p := range e.Problems {
			fmt.Fprintf(b, "  refused: %s\n", flat(p.String()))
		}
		for _, s := range e.Services {
			fmt.Fprintf(b, "  %s %s (%s): %s\n", s.Action, s.Service, s.Role, flat(strings.Join(s.Reasons, "; ")))
		}
		for _, m := range e.Migrations {
			fmt.Fprintf(b, "  migrate %s: %s (%s)\n", m.Service, runs(m.Runs), flat(m.Reason))
		}
		for _, c := range e.CLI {
			fmt.Fprintf(b, "  cli %s: %s\n", c.Service, runs(c.Runs))
		}
		for _, j := range e.Jobs {
			fmt.Fprintf(b, "  job %s: %s", j.Job, j.Action)
			if len(j.Changes) > 0 {
				fmt.Fprintf(b, " (%s)", flat(strings.Join(j.Changes, "; ")))
			}
			fmt.Fprintf(b, ", schedule %s\n", flat(j.Schedule))
		}
		if e.Rollout != nil {
			fmt.Fprintf(b, "  rollout: %s\n", e.Rollout.describe())
		}
		if e.FromError != "" {
			fmt.Fprintf(b, "  note: did not load at --from: %s\n", flat(e.FromError))
		}
		for _, n := range e.Notes {
			fmt.Fprintf(b, "  note: %s\n", flat(n))
		}
		if e.State != EnvInvalid && e.State != EnvRemoved && len(e.Services) == 0 {
			b.WriteString("  no change to the containers\n")
		}
	}
	if len(r.Unchanged) > 0 {
		fmt.Fprintf(b, "\nunchanged: %s\n", strings.Join(r.Unchanged, ", "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func runs(b bool) string {
	if b {
		return "runs"
	}
	return "skipped"
}

// describe says a rollout in one line.
func (r *Rollout) describe() string {
	var parts []string
	if r.Canary > 0 {
		parts = append(parts, plural(r.Canary, "canary host")+" first")
	}
	if r.MaxParallel != "" {
		parts = append(parts, "then at most "+flat(r.MaxParallel)+" at a time")
	} else {
		parts = append(parts, "then all at once")
	}
	if r.Pause != "" {
		parts = append(parts, "pause "+r.Pause+" after the canaries")
	}
	s := strings.Join(parts, ", ")
	if len(r.Waves) > 0 {
		ws := make([]string, len(r.Waves))
		for i, w := range r.Waves {
			ws[i] = strconv.Itoa(w)
		}
		s += fmt.Sprintf("; over %d hosts, %d waves: %s", r.Hosts, len(r.Waves), strings.Join(ws, ", "))
	}
	return s
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// flat makes a string from the repository one line: line breaks and other
// control and format characters become spaces, credentials in URLs go
// (forge.OneLine, uncut).
func flat(s string) string { return forge.OneLine(s, 0) }
