package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/reconcile"
	"berth.dev/berth/status"
)

// berth history shows each record's result, how many passes it stands
// for, its author and the key that signed it.
func TestHistory_ShowsPassesAuthorAndSigner(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfgPath, []byte("env: prod\nrepo: {url: 'file:///nonexistent'}\nstate_dir: "+dir+"\n"), 0o600)
	j := &reconcile.Journal{Dir: filepath.Join(dir, "deploys")}
	now := time.Now().UTC()
	for _, r := range []reconcile.Record{
		{ID: "20261128T080000.000000Z-aaaaaa", Commit: "c1c1c1c1c1c1c1c1", Result: reconcile.ResultSucceeded, Author: "Ada <ada@example.org>", Signer: "0123456789ABCDEF", Subject: "v1", Started: now, Finished: now},
		{ID: "20261128T090000.000000Z-bbbbbb", Commit: "", Result: reconcile.ResultOutage, Class: "outage", Phase: "list", Passes: 7, Reason: "list https://git.example.org: connection refused", Started: now, Finished: now},
	} {
		if err := j.Write(&r); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(t.Context(), []string{"history", "--config", cfgPath}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(stdout.String(), "\n")
	if !strings.Contains(lines[0], "PASSES") || !strings.Contains(lines[0], "AUTHOR") || !strings.Contains(lines[0], "SIGNER") {
		t.Fatalf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[1] != "-" || f[2] != "outage" || f[3] != "7" {
		t.Errorf("outage line %q: want no commit, outage, 7 passes", lines[1])
	}
	if !strings.Contains(lines[2], "succeeded") || !strings.Contains(lines[2], "Ada <ada@example.org>") || !strings.Contains(lines[2], "0123456789ABCDEF") {
		t.Errorf("deploy line %q: want author and signer", lines[2])
	}
}

// berth status names a Docker engine that did not answer.
func TestPrintStatus_SaysDockerDidNotAnswer(t *testing.T) {
	var b strings.Builder
	printStatus(&b, status.Env{Env: "prod", Docker: "not answering within 300ms (a hung dockerd?)"})
	if !strings.Contains(b.String(), "docker  not answering within 300ms") {
		t.Errorf("berth status output lacks the Docker line:\n%s", b.String())
	}
}
