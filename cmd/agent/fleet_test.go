package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/testenv"
	"berth.dev/berth/operator"
	"berth.dev/berth/status"
)

func TestPause_WithoutAFleetLeavesARequestForTheAgent(t *testing.T) {
	dir := t.TempDir()
	cfg := writeConfig(t, "env: prod\nstate_dir: "+dir+"\nrepo: {url: https://git.example.org/ops/config.git}\n")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"pause", "--config", cfg, "--reason", "freeze window"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "request.json"))
	if err != nil {
		b, err = os.ReadFile(filepath.Join(dir, "envs", "prod", "request.json"))
	}
	if err != nil {
		t.Fatal(err)
	}
	var req struct{ Action, By, Reason string }
	json.Unmarshal(b, &req)
	if req.Action != "pause" || req.Reason != "freeze window" || !strings.Contains(req.By, "@") {
		t.Fatalf("request %s", b)
	}
	if !strings.Contains(stdout.String(), "not running") {
		t.Fatalf("stdout %q", stdout.String())
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"pause", "--config", cfg, "--fleet"}, &stdout, &stderr); code != exitConfig || !strings.Contains(stderr.String(), "no fleet: block") {
		t.Fatalf("--fleet without a fleet: exit %d, %q", code, stderr.String())
	}
}

// berth fleet status, pause/resume --fleet and retry against a real etcd,
// with the hosts' records published as agents publish them.
func TestFleetCommands_AgainstEtcd(t *testing.T) {
	e := testenv.StartEtcd(t)
	dir := t.TempDir()
	cfg := writeConfig(t, "env: prod\nstate_dir: "+dir+"\nrepo: {url: https://git.example.org/ops/config.git}\n"+
		"fleet:\n  etcd: {endpoints: ["+e.ClientURL+"]}\n  host: cli\n  lease_ttl: 5s\n")
	for _, h := range []string{"web-1", "web-2"} {
		c, err := fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: []string{e.ClientURL}}, Host: h, LeaseTTL: 5 * time.Second}, fleet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go c.Run(ctx)
		t.Cleanup(func() { cancel(); c.Close() })
		c.Publish("prod", fleet.HostState{Live: &fleet.Commit{Revision: "0123456789abcdef", Author: "Ada Lovelace", Subject: "raise the pool size"}, Version: "test"})
	}
	var data struct {
		Envs []status.FleetEnv `json:"envs"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"fleet", "status", "--config", cfg, "--format", "json"}, &stdout, &stderr)
		if code == exitOK {
			data.Envs = nil
			if err := json.Unmarshal(stdout.Bytes(), &data); err != nil {
				t.Fatal(err)
			}
			if len(data.Envs) == 1 && len(data.Envs[0].Hosts) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet status: exit %d, %s %s", code, stdout.String(), stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"fleet", "status", "--config", cfg, "--format", "json"}, &stdout, &stderr)
	checkReference(t, "berth-fleet-status", stdout.Bytes())
	stdout.Reset()
	if code := run(context.Background(), []string{"fleet", "status", "--config", cfg}, &stdout, &stderr); code != exitOK {
		t.Fatalf("table: exit %d %s", code, stderr.String())
	}
	for _, want := range []string{"web-1", "web-2", "Ada Lovelace", "raise the pool size", "0123456789ab", "alive"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, stdout.String())
		}
	}
	if code := run(context.Background(), []string{"pause", "--config", cfg, "--fleet", "--reason", "incident 42"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("pause --fleet: exit %d %s", code, stderr.String())
	}
	stdout.Reset()
	run(context.Background(), []string{"fleet", "status", "--config", cfg}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "paused fleet-wide by") || !strings.Contains(stdout.String(), "incident 42") {
		t.Fatalf("status after pause --fleet:\n%s", stdout.String())
	}
	if code := run(context.Background(), []string{"resume", "--config", cfg, "--fleet"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("resume --fleet: exit %d %s", code, stderr.String())
	}
	stdout.Reset()
	run(context.Background(), []string{"fleet", "status", "--config", cfg}, &stdout, &stderr)
	if strings.Contains(stdout.String(), "paused fleet-wide") {
		t.Fatalf("still paused after resume --fleet:\n%s", stdout.String())
	}
	stdout.Reset()
	if code := run(context.Background(), []string{"retry", "--config", cfg}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "cleared fleet-wide") {
		t.Fatalf("retry with a fleet: exit %d %s %s", code, stdout.String(), stderr.String())
	}
	// etcd gone: the CLI says so within its bound, and fails.
	e.Stop()
	stderr.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), 2*operator.Timeout)
	defer cancel()
	if code := run(ctx, []string{"fleet", "status", "--config", cfg}, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), "etcd") {
		t.Fatalf("etcd stopped: exit %d, %q", code, stderr.String())
	}
}
