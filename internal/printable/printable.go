// Package printable cuts a string that came from outside (a registry, a
// file of the repository) to what an error or a log line can carry: one
// line of printable ASCII, bounded. Terminal escapes, newlines and bidi
// overrides become '?'.
package printable

// Cut returns s with every byte outside printable ASCII replaced by '?',
// at most max bytes of it, and "…" when it was longer.
func Cut(s string, max int) string {
	out := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(out) < max; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out = append(out, c)
	}
	if len(s) > max {
		return string(out) + "…"
	}
	return string(out)
}
