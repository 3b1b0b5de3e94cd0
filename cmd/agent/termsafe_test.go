package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/agentconfig"
	"berth.dev/berth/reconcile"
)

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
