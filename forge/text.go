package forge

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of one forge, in characters (runes), as its API enforces them.
type Limits struct {
	// Description of a commit status: GitHub refuses more than 140
	// characters (422); GitLab and Gitea store more, but show one line.
	Description int
	// Body of a pull request or comment: GitHub refuses more than 65,536
	// characters; GitLab allows 1,000,000 in a merge request's
	// description; Gitea has no limit of its own.
	Body int
	// Context (status name): GitHub and Gitea have none documented;
	// GitLab keeps 255.
	Context int
}

var limits = map[Kind]Limits{
	GitHub: {Description: 140, Body: 65536, Context: 255},
	GitLab: {Description: 255, Body: 1000000, Context: 255},
	Gitea:  {Description: 255, Body: 65536, Context: 255},
}

// LimitsOf returns the limits of a forge.
func LimitsOf(k Kind) Limits { return limits[k] }

// userinfo matches credentials inside a URL (scheme://user:pass@).
var userinfo = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://)[^/@\s]*@`)

// OneLine makes s safe as a one-line plain-text field and cuts it to max
// runes, ending with "…" when cut: invalid UTF-8 replaced, control, format
// and bidi characters and line breaks turned into spaces, runs of spaces
// collapsed, credentials in URLs removed. It never cuts inside a rune.
func OneLine(s string, max int) string {
	s = userinfo.ReplaceAllString(strings.ToValidUTF8(s, "\uFFFD"), "$1")
	var b strings.Builder
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return cut(b.String(), max, "…")
}

// Body makes s safe as a Markdown body (pull request, comment) and cuts it
// to max runes, ending with note when cut. Markdown escaping of repo
// strings is the renderer's job; here invalid UTF-8 is replaced, control
// characters other than newline and tab removed (NUL makes some forges
// refuse the request), and credentials in URLs removed.
func Body(s string, max int, note string) string {
	s = userinfo.ReplaceAllString(strings.ToValidUTF8(s, "\uFFFD"), "$1")
	s = strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	return cut(s, max, note)
}

// cut keeps s within max runes, replacing its end with tail when too long.
func cut(s string, max int, tail string) string {
	if max <= 0 || utf8.RuneCountInString(s) <= max {
		return s
	}
	keep := max - utf8.RuneCountInString(tail)
	if keep < 0 {
		keep, tail = max, ""
	}
	n := 0
	for i := range s {
		if n == keep {
			return s[:i] + tail
		}
		n++
	}
	return s + tail
}
