package secrets

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
)

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
// one-shot's or a job run's): as written, and as a program printing it
// would commonly encode it — base64 (standard and URL alphabets, at any of
// the three alignments it can take inside a longer encoded text) and hex.
// Values shorter than 4 bytes are left alone: replacing them would garble
// unrelated output. An encoding keeps at most a few bits of a value's
// first and last bytes (the characters it shares with its neighbours).
func Redact(s string, values []string) string {
	for _, v := range values {
		if len(v) < 4 {
			continue
		}
		s = strings.ReplaceAll(s, v, "[redacted]")
		for _, enc := range encodings(v) {
			s = strings.ReplaceAll(s, enc, "[redacted]")
		}
	}
	return s
}

// encodings are v's encoded forms long enough to be v's alone (8+
// characters): for base64, the characters that depend on v's bytes only,
// whatever v's offset in the encoded text.
func encodings(v string) []string {
	var out []string
	add := func(e string) {
		if len(e) >= 8 {
			out = append(out, e)
		}
	}
	for shift := range 3 {
		if shift >= len(v) {
			break
		}
		rest := v[shift:]
		whole := []byte(rest[:len(rest)/3*3])
		add(base64.RawStdEncoding.EncodeToString(whole))
		add(base64.RawURLEncoding.EncodeToString(whole))
	}
	add(hex.EncodeToString([]byte(v)))
	add(strings.ToUpper(hex.EncodeToString([]byte(v))))
	return out
}
