package ui

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxText bounds one string on the page (a subject, a reason); maxOutput
// a run's output tail.
const (
	maxText   = 1000
	maxOutput = 16 << 10
)

// clean makes s safe to show as one line of text: control characters,
// bidi overrides, zero-width and line-separator characters and invalid
// UTF-8 are written as \uXXXX or \xXX (as the CLI writes them on a
// terminal), and s is cut at maxText bytes. html/template escapes the
// rest (<, >, &, quotes) when the page is written.
func clean[S ~string](s S) string { return escape(string(s), false, maxText) }

// cleanBlock is clean for text shown as a block (a run's output): newlines
// and tabs stay; the tail of at most max bytes is kept.
func cleanBlock(s string, max int) string {
	if len(s) > max {
		s = s[len(s)-max:]
		// Start at a line, or at least at a rune.
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < 200 {
			s = s[i+1:]
		}
		for len(s) > 0 && !utf8.RuneStart(s[0]) {
			s = s[1:]
		}
	}
	return escape(s, true, len(s))
}

func escape(s string, block bool, max int) string {
	cut := false
	if len(s) > max {
		i := max
		for i > 0 && !utf8.RuneStart(s[i]) {
			i-- // cut before a rune, never inside one
		}
		s, cut = s[:i], true
	}
	if !needsEscape(s, block) {
		if cut {
			return s + "…"
		}
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r, block) && r > 0xffff:
			fmt.Fprintf(&b, `\U%08x`, r)
		case unsafeRune(r, block):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}

// unsafeRune says whether r must not reach the page as itself: C0 and C1
// controls and DEL (a block keeps newlines and tabs), bidi embeddings,
// overrides and isolates (they reorder what is shown around them), and
// invisible characters that hide or join text (every format character,
// Unicode's Cf, and the line and paragraph separators).
func unsafeRune(r rune, block bool) bool {
	switch {
	case block && (r == '\n' || r == '\t'):
		return false
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true // bidi controls
	case r >= 0x200b && r <= 0x200d, r == 0x2028, r == 0x2029, r == 0xfeff, r == 0x2060:
		return true // zero-width, line and paragraph separators, BOM, word joiner
	case r >= 0xfff9 && r <= 0xfffb:
		return true // interlinear annotations
	case r >= 0xad && unicode.Is(unicode.Cf, r):
		return true // every other format character: invisible (tags U+E0020–E007F spell hidden ASCII, invisible operators, soft hyphens)
	}
	return false
}

func needsEscape(s string, block bool) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || unsafeRune(r, block) {
			return true
		}
		i += size
	}
	return false
}

// short is the first 12 characters of a commit (cleaned).
func short(commit string) string {
	if len(commit) > 12 {
		commit = commit[:12]
	}
	return clean(commit)
}
