package envs

import (
	"strings"
	"testing"
)

// The bounded names are checked by length beside an unbounded pattern
// (backendRe says why): the bound is the same as the {0,N} it replaced.
func TestNameBounds(t *testing.T) {
	for _, tc := range []struct {
		what  string
		valid func(string) bool
		max   int
		bad   []string
	}{
		{"job", ValidJobName, 63, []string{"", "-a", ".a", "_a", "a b", "a/b", "é"}},
		{"backend", ValidBackendName, 100, []string{"", "-a", ".a", "_a", "a;b", "a/b"}},
		{"secret file", validSecretFile, 128, []string{"", "-a", ".a", "a/b", "a b"}},
	} {
		for _, ok := range []string{"a", "A9_.-x", strings.Repeat("a", tc.max)} {
			if !tc.valid(ok) {
				t.Errorf("%s %q refused", tc.what, ok)
			}
		}
		for _, bad := range append(tc.bad, strings.Repeat("a", tc.max+1)) {
			if tc.valid(bad) {
				t.Errorf("%s %q accepted", tc.what, bad)
			}
		}
	}
	if !validSecretFile("_a") {
		t.Error("a secret file may start with _")
	}
}
