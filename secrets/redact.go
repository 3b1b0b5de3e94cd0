package secrets

import "strings"

// Values returns the values of NAME=value pairs (resolved secrets).
func Values(pairs []string) []string {
	var out []string
	for _, kv := range pairs {
		if _, v, ok := strings.Cut(kv, "="); ok {
			out = append(out, v)
		}
	}
	return out
}

// Redact replaces every one of values in s, for output berth keeps (a
// one-shot's or a job run's). Values shorter than 4 bytes are left alone:
// replacing them would garble unrelated output.
func Redact(s string, values []string) string {
	for _, v := range values {
		if len(v) >= 4 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}
