package preview

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Marker is the first line of the Markdown form: CI steps look for it to
// update berth's one comment on a PR instead of adding another.
const Marker = "<!-- berth-plan -->"

// Markdown writes the report for a PR comment (or a promotion PR's body).
// Every string that comes from the repository — commit subjects, refs,
// file, service and job names, reasons, policy messages — is shown in a
// code span (code), where a forge renders no HTML, link, mention (@team)
// or issue reference (#1), and which a backtick in the string cannot
// close.
func (r *Report) Markdown(w io.Writer) error {
	b := &strings.Builder{}
	b.WriteString(Marker + "\n")
	fmt.Fprintf(b, "### berth plan: %s → %s\n\n", code(short(r.From.ID)), code(short(r.To.ID)))
	fmt.Fprintf(b, "%s → %s: %s\n", code(r.From.Ref), code(r.To.Ref), code(r.To.Subject))
	if len(r.Envs) == 0 {
		b.WriteString("\nNo environment changes.\n")
	}
	for _, e := range r.Envs {
		fmt.Fprintf(b, "\n#### env %s: %s\n\n", code(e.Env), e.State)
		if len(e.Files) > 0 {
			b.WriteString("Files: " + codes(e.Files) + "\n\n")
		}
		if e.Error != "" || len(e.Problems) > 0 {
			b.WriteString("**Refused** (as `berth validate`): the agents of this env will not deploy this revision.\n\n")
			if e.Error != "" {
				b.WriteString("- " + code(e.Error) + "\n")
			}
			for _, p := range e.Problems {
				b.WriteString("- " + code(p.String()) + "\n")
			}
			b.WriteString("\n")
		}
		for _, s := range e.Services {
			fmt.Fprintf(b, "- **%s** %s (%s): %s\n", s.Action, code(s.Service), s.Role, codes(s.Reasons))
		}
		if len(e.Services) == 0 && e.State != EnvInvalid && e.State != EnvRemoved {
			b.WriteString("- no change to the containers\n")
		}
		for _, m := range e.Migrations {
			fmt.Fprintf(b, "- migration %s **%s**: %s\n", code(m.Service), runs(m.Runs), code(m.Reason))
		}
		for _, c := range e.CLI {
			fmt.Fprintf(b, "- cli %s **%s**\n", code(c.Service), runs(c.Runs))
		}
		for _, j := range e.Jobs {
			fmt.Fprintf(b, "- job %s **%s**, schedule %s", code(j.Job), j.Action, code(j.Schedule))
			if len(j.Changes) > 0 {
				b.WriteString(": " + codes(j.Changes))
			}
			b.WriteString("\n")
		}
		if e.Rollout != nil {
			fmt.Fprintf(b, "- rollout: %s\n", code(e.Rollout.describe()))
		}
		if e.FromError != "" {
			b.WriteString("- note: did not load at the base: " + code(e.FromError) + "\n")
		}
		for _, n := range e.Notes {
			b.WriteString("- note: " + code(n) + "\n")
		}
	}
	if len(r.Unchanged) > 0 {
		b.WriteString("\nUnchanged: " + codes(r.Unchanged) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// maxSpan bounds one code span (a hostile string must not fill the comment).
const maxSpan = 500

// Code shows s literally in Markdown (code): for other Markdown berth
// posts on a forge (promotion PRs and their comments).
func Code(s string) string { return code(s) }

// code shows s literally in Markdown: one line, cut, inside a backtick
// fence longer than any run of backticks in s (CommonMark code spans),
// padded with a space when s starts or ends with a backtick. (No tables
// here: in a table cell a pipe would end the cell even inside a span.)
func code(s string) string {
	s = flat(s)
	if utf8.RuneCountInString(s) > maxSpan {
		s = string([]rune(s)[:maxSpan-1]) + "…"
	}
	if s == "" {
		return "(none)"
	}
	longest, run := 0, 0
	for _, r := range s {
		if r == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	fence := strings.Repeat("`", longest+1)
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + s + fence
}

func codes(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = code(s)
	}
	return strings.Join(out, ", ")
}
