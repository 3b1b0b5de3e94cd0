package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/reconcile"
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
		if _, err := (termSafe{&b}).Write([]byte(tc.in)); err != nil || b.String() != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.in, b.String(), err, tc.want)
		}
	}
	// JSON stays JSON.
	var b bytes.Buffer
	json.NewEncoder(termSafe{&b}).Encode(map[string]string{"s": "a\u009b\u202e\x7fb"})
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["s"] != "a\u009b\u202e\x7fb" {
		t.Fatalf("JSON through termSafe: %s, %v", b.String(), err)
	}
}

// TestHistory_RepoStringsAreEscaped: a commit subject and author written
// to move the cursor and retitle the terminal reach `berth history` and
// `berth status` as escaped text.
func TestHistory_RepoStringsAreEscaped(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	state := filepath.Join(dir, "state")
	os.WriteFile(cfgPath, []byte("env: prod\nstate_dir: "+state+"\nrepo: {url: 'https://git.example/config.git'}\ndocker: {host: 'unix:///nonexistent.sock'}\n"), 0o600)
	cfg, err := agentconfig.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Journal("prod")
	now := time.Now().UTC()
	rec := &reconcile.Record{ID: "20260101T000000.000000Z-aaaaaa", Env: "prod", Commit: strings.Repeat("a", 40), Started: now, Finished: now, LastPass: now,
		Result: reconcile.ResultFailed, Author: "Eve \x1b]0;owned\x07<e@x>", Subject: "fix \x1b[2J\x1b[H all is well", Reason: "invalid config:\n\x1b[31mred"}
	if err := j.Write(rec); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"history", "--config", cfgPath}, {"history", "--json", "--config", cfgPath}, {"status", "--config", cfgPath}} {
		var out, errb bytes.Buffer
		run(t.Context(), args, &out, &errb)
		got := out.String() + errb.String()
		if strings.ContainsRune(got, 0x1b) || strings.ContainsRune(got, 0x07) {
			t.Errorf("berth %v printed raw escapes: %q", args, got)
		}
		if !strings.Contains(got, `\u001b[2J`) && !strings.Contains(got, `\\u001b[2J`) {
			t.Errorf("berth %v does not show the subject: %q", args, got)
		}
	}
}
