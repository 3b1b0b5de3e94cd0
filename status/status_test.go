package status

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"berth.dev/berth/agentconfig"
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
	DockerTimeout = 300 * time.Millisecond
	defer func() { DockerTimeout = 3 * time.Second }()
	dir := t.TempDir()
	cfg := &agentconfig.Config{Env: "prod", StateDir: dir}
	now := time.Now().UTC()
	if err := reconcile.SaveState(dir, reconcile.State{Live: &reconcile.RevisionState{Commit: "c1c1c1c1c1c1c1", At: now}}); err != nil {
		t.Fatal(err)
	}
	live := &Live{}
	live.PassEnded(reconcile.Pass{Result: reconcile.ResultOutage, New: true, Class: failure.Outage, Record: reconcile.Record{
		Result: reconcile.ResultOutage, Class: "outage", Commit: "c2c2c2c2c2c2c2", Phase: "plan", Finished: now, Live: "c1c1c1c1c1c1c1",
		Reason: "plan: list containers: context deadline exceeded"}})

	start := time.Now()
	out, err := Read(t.Context(), cfg, "prod", hungDocker(t), live)
	if took := time.Since(start); err != nil || took > 2*time.Second {
		t.Fatalf("statusData: %v after %s", err, took)
	}
	if out.Live == nil || out.Live.Commit != "c1c1c1c1c1c1c1" || !strings.Contains(out.Docker, "not answering within 300ms") ||
		out.Agent == nil || out.Agent.Last.Result != "outage" {
		t.Fatalf("status %+v", out)
	}
	line := Line(cfg, "prod", live)
	for _, want := range []string{"env prod: live c1c1c1c1c1c1", "; outage since", "(1 passes), retrying: plan: list containers: context deadline exceeded"} {
		if !strings.Contains(line, want) {
			t.Errorf("STATUS=%q lacks %q", line, want)
		}
	}
}

// STATUS= follows a deploy through its phases and names a verdict.
func TestStatusLine_DeployPhasesAndVerdict(t *testing.T) {
	dir := t.TempDir()
	cfg := &agentconfig.Config{Env: "prod", StateDir: dir}
	live := &Live{}
	if got := Line(cfg, "prod", live); got != "env prod: no live revision yet; first check running" {
		t.Fatalf("at start: %q", got)
	}
	if live.Progress(reconcile.Progress{Commit: "c2c2c2c2c2c2c2", Phase: "list"}) {
		t.Fatal("an idle poll's list step must not change STATUS=")
	}
	if !live.Progress(reconcile.Progress{Commit: "c2c2c2c2c2c2c2", Phase: "servers"}) || !strings.Contains(Line(cfg, "prod", live), "deploying c2c2c2c2c2c2: servers") {
		t.Fatalf("deploying: %q", Line(cfg, "prod", live))
	}
	live.PassEnded(reconcile.Pass{Result: reconcile.ResultFailed, New: true, Class: failure.Verdict, Record: reconcile.Record{
		Result: reconcile.ResultFailed, Class: "verdict", Commit: "c2c2c2c2c2c2c2", Reason: "servers: service web: container x not healthy after 1m0s\nmore"}})
	if got := Line(cfg, "prod", live); !strings.HasSuffix(got, "; c2c2c2c2c2c2 failed (verdict): servers: service web: container x not healthy after 1m0s") {
		t.Fatalf("after a verdict: %q", got)
	}
}
