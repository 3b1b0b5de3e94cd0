package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/fleet"
	"berth.dev/berth/internal/testenv"
)

// berth jobs history with a fleet shows the fleet's runs, each naming its
// host, whichever host asks; --local shows this host's own.
func TestJobsHistory_WithAFleetShowsTheFleetsRunsAndTheirHosts(t *testing.T) {
	e := testenv.StartEtcd(t)
	dir := t.TempDir()
	cfg := writeConfig(t, "env: prod\nstate_dir: "+dir+"\nrepo: {url: https://git.example.org/ops/config.git}\n"+
		"fleet:\n  etcd: {endpoints: ["+e.ClientURL+"]}\n  host: cli\n  lease_ttl: 5s\n")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	for i, h := range []string{"web-1", "web-2", "web-1"} {
		c, err := fleet.New(fleet.Config{Etcd: fleet.EtcdConfig{Endpoints: []string{e.ClientURL}}, Host: h, LeaseTTL: 5 * time.Second}, fleet.Options{})
		if err != nil {
			t.Fatal(err)
		}
		claim, err := c.ClaimJob(ctx, "prod", "cleanup", base.Add(time.Duration(i)*time.Minute), fleet.JobPolicy{StartingDeadline: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := claim.Finish(ctx, fleet.JobResult{Status: fleet.JobSucceeded, Started: time.Now(), Ended: time.Now().Add(time.Second), RunID: "run-" + h}); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"jobs", "history", "cleanup", "--config", cfg, "--json"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var runs []fleet.JobRecord
	if err := json.Unmarshal(stdout.Bytes(), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 3 || runs[0].Host != "web-1" || runs[1].Host != "web-2" || runs[0].Token == 0 || runs[0].Status != "succeeded" {
		t.Fatalf("fleet history %+v", runs)
	}
	stdout.Reset()
	if code := run(ctx, []string{"jobs", "history", "cleanup", "--config", cfg}, &stdout, &stderr); code != exitOK ||
		!strings.Contains(stdout.String(), "HOST") || strings.Count(stdout.String(), "web-1  succeeded") != 2 || !strings.Contains(stdout.String(), "run-web-2") {
		t.Fatalf("table: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run(ctx, []string{"jobs", "history", "cleanup", "--config", cfg, "--local", "--json"}, &stdout, &stderr); code != exitOK ||
		strings.TrimSpace(stdout.String()) != "[]" {
		t.Fatalf("--local: exit %d %q %s", code, stdout.String(), stderr.String())
	}
}
