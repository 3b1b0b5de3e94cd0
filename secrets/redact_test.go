package secrets

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// TestRedact_EncodedValues: a job that prints a secret base64- or
// hex-encoded (alone, or inside a longer encoded text at any offset) keeps
// none of it in the output berth stores.
func TestRedact_EncodedValues(t *testing.T) {
	const secret = "s3cr3t-P@ssw0rd-value"
	for _, tc := range []struct{ name, out string }{
		{"as written", "password=" + secret + "\n"},
		{"base64", base64.StdEncoding.EncodeToString([]byte(secret)) + "\n"},
		{"base64 in a basic auth header, offset 1", "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+secret)) + "\n"},
		{"base64, offset 2", base64.StdEncoding.EncodeToString([]byte("ab"+secret+"x")) + "\n"},
		{"base64 URL alphabet", base64.RawURLEncoding.EncodeToString([]byte("{\"k\":\""+secret+"\"}")) + "\n"},
		{"hex", hex.EncodeToString([]byte(secret)) + "\n"},
		{"HEX", strings.ToUpper(hex.EncodeToString([]byte(secret))) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Redact(tc.out, []string{secret})
			if !strings.Contains(got, "[redacted]") {
				t.Fatalf("not redacted: %q", got)
			}
			// Whatever is left decodes to no more than a few bytes of the
			// value's ends.
			for _, piece := range strings.FieldsFunc(got, func(r rune) bool { return strings.ContainsRune(" :\n[]=", r) }) {
				for _, dec := range []func(string) ([]byte, error){base64.RawStdEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString} {
					if b, err := dec(strings.TrimRight(piece, "=")); err == nil && strings.Contains(string(b), secret[2:len(secret)-2]) {
						t.Fatalf("left %q, which decodes to %q", piece, b)
					}
				}
			}
		})
	}
	if got := Redact("abc and a plain line", []string{"abc"}); got != "abc and a plain line" {
		t.Errorf("a short value garbled the output: %q", got)
	}
}
