package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"berth.dev/berth/engine"
	"berth.dev/berth/internal/failure"
	"berth.dev/berth/reconcile"
)

// hungDocker is a Docker socket that accepts connections and never
// answers: what a client sees of a SIGSTOPped dockerd.
func hungDocker(t *testing.T) *engine.Engine {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	dc, err := client.NewClientWithOpts(client.WithHost("unix://"+sock), client.WithVersion("1.41"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Close() })
	return engine.New(dc, nil)
}

// A hung dockerd does not hang the status: the state-dir part answers
// within the deadline and the status says Docker does not answer; the
// running agent's STATUS= line says what holds the head back.
func TestStatus_AnswersDuringAHungDockerd(t *testing.T) {
	statusDockerTimeout = 300 * time.Millisecond
	defer func() { statusDockerTimeout = 3 * time.Second }()
	dir := t.TempDir()
	cfg := &Config{Env: "prod", StateDir: dir}
	now := time.Now().UTC()
	if err := reconcile.SaveState(dir, reconcile.State{Live: &reconcile.RevisionState{Commit: "c1c1c1c1c1c1c1", At: now}}); err != nil {
		t.Fatal(err)
	}
	live := &liveStatus{}
	live.passEnded(reconcile.Pass{Result: reconcile.ResultOutage, New: true, Class: failure.Outage, Record: reconcile.Record{
		Result: reconcile.ResultOutage, Class: "outage", Commit: "c2c2c2c2c2c2c2", Phase: "plan", Finished: now, Live: "c1c1c1c1c1c1c1",
		Reason: "plan: list containers: context deadline exceeded"}})

	start := time.Now()
	out, err := statusData(t.Context(), cfg, "prod", hungDocker(t), live)
	if took := time.Since(start); err != nil || took > 2*time.Second {
		t.Fatalf("statusData: %v after %s", err, took)
	}
	if out.Live == nil || out.Live.Commit != "c1c1c1c1c1c1c1" || !strings.Contains(out.Docker, "not answering within 300ms") ||
		out.Agent == nil || out.Agent.Last.Result != "outage" {
		t.Fatalf("status %+v", out)
	}
	line := live.line(cfg, "prod")
	for _, want := range []string{"env prod: live c1c1c1c1c1c1", "; outage since", "(1 passes), retrying: plan: list containers: context deadline exceeded"} {
		if !strings.Contains(line, want) {
			t.Errorf("STATUS=%q lacks %q", line, want)
		}
	}
	var b strings.Builder
	printStatus(&b, *out)
	if !strings.Contains(b.String(), "docker  not answering within 300ms") {
		t.Errorf("berth status output lacks the Docker line:\n%s", b.String())
	}
}

// STATUS= follows a deploy through its phases and names a verdict.
func TestStatusLine_DeployPhasesAndVerdict(t *testing.T) {
	dir := t.TempDir()
	cfg := &Config{Env: "prod", StateDir: dir}
	live := &liveStatus{}
	if got := live.line(cfg, "prod"); got != "env prod: no live revision yet; first check running" {
		t.Fatalf("at start: %q", got)
	}
	if live.progress(reconcile.Progress{Commit: "c2c2c2c2c2c2c2", Phase: "list"}) {
		t.Fatal("an idle poll's list step must not change STATUS=")
	}
	if !live.progress(reconcile.Progress{Commit: "c2c2c2c2c2c2c2", Phase: "servers"}) || !strings.Contains(live.line(cfg, "prod"), "deploying c2c2c2c2c2c2: servers") {
		t.Fatalf("deploying: %q", live.line(cfg, "prod"))
	}
	live.passEnded(reconcile.Pass{Result: reconcile.ResultFailed, New: true, Class: failure.Verdict, Record: reconcile.Record{
		Result: reconcile.ResultFailed, Class: "verdict", Commit: "c2c2c2c2c2c2c2", Reason: "servers: service web: container x not healthy after 1m0s\nmore"}})
	if got := live.line(cfg, "prod"); !strings.HasSuffix(got, "; c2c2c2c2c2c2 failed (verdict): servers: service web: container x not healthy after 1m0s") {
		t.Fatalf("after a verdict: %q", got)
	}
}

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
