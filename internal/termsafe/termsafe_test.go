package termsafe

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestTermSafe_EscapesWhatATerminalActsOn(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text\twith tabs\nand lines", "plain text\twith tabs\nand lines"},
		{"title \x1b]0;pwned\x07 clear \x1b[2J", `title \u001b]0;pwned\u0007 clear \u001b[2J`},
		{"carriage\rreturn, DEL\x7f, CSI \u009b31m", `carriage\u000dreturn, DEL\u007f, CSI \u009b31m`},
		{"bidi \u202egnp.exe", `bidi \u202egnp.exe`},
		{"not UTF-8 \xff", `not UTF-8 \xff`},
		{"ünïcödé stays", "ünïcödé stays"},
	} {
		var b bytes.Buffer
		if _, err := (Writer{&b}).Write([]byte(tc.in)); err != nil || b.String() != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.in, b.String(), err, tc.want)
		}
	}
	// JSON stays JSON.
	var b bytes.Buffer
	json.NewEncoder(Writer{&b}).Encode(map[string]string{"s": "a\u009b\u202e\x7fb"})
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["s"] != "a\u009b\u202e\x7fb" {
		t.Fatalf("JSON through termSafe: %s, %v", b.String(), err)
	}
}

// TestHistory_RepoStringsAreEscaped: a commit subject and author written
// to move the cursor and retitle the terminal reach `berth history` and
// `berth status` as escaped text.
