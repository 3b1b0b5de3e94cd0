// Package termsafe owns what berth's CLI writes to a terminal: every
// character a terminal acts on (escape sequences, C0 and C1 controls, bidi
// overrides) that reaches it from the config repository is written
// escaped.
package termsafe

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
)

// Writer escapes, in what a command prints, the characters a terminal
// acts on: commit subjects and authors, reasons, schedules and every other
// string that comes from the config repository reach status, history, jobs,
// plan and validate, and an escape sequence there could rewrite the
// operator's screen or title, or hide text (bidi overrides). Newlines and
// tabs pass; everything else is written as \uXXXX (\xXX for a byte that is
// not UTF-8), which keeps --json output valid JSON.
type Writer struct{ W io.Writer }

func (t Writer) Write(p []byte) (int, error) {
	if !needsEscape(p) {
		return t.W.Write(p)
	}
	if _, err := io.WriteString(t.W, escapeTerm(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Raw is the writer under a Writer, for output that is the container's
// own (job logs) when it goes to a file or a pipe; a terminal keeps it
// escaped.
func Raw(w io.Writer) io.Writer {
	t, ok := w.(Writer)
	if !ok {
		return w
	}
	if f, ok := t.W.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		return w
	}
	return t.W
}

func unsafeRune(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true // C0, DEL, C1 (CSI is U+009B)
	case r == 0x061c, r == 0x200e, r == 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return true // bidi controls
	}
	return false
}

// Under is the writer a Writer escapes for, or w itself.
func Under(w io.Writer) io.Writer {
	if t, ok := w.(Writer); ok {
		return t.W
	}
	return w
}

func needsEscape(p []byte) bool {
	for i := 0; i < len(p); {
		if p[i] >= 0x20 && p[i] < 0x7f || p[i] == '\n' || p[i] == '\t' {
			i++
			continue
		}
		r, size := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && size == 1 || unsafeRune(r) {
			return true
		}
		i += size
	}
	return false
}

func escapeTerm(p []byte) string {
	var b strings.Builder
	for i := 0; i < len(p); {
		r, size := utf8.DecodeRune(p[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, p[i])
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.Write(p[i : i+size])
		}
		i += size
	}
	return b.String()
}
