package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUI_RefusesAnOpenListenAndABadConfig(t *testing.T) {
	dir := t.TempDir()
	noFleet := filepath.Join(dir, "agent.yaml")
	os.WriteFile(noFleet, []byte("env: prod\nrepo: {url: https://git.example.org/config.git}\n"), 0o600)
	badFleet := filepath.Join(dir, "fleet.yaml")
	os.WriteFile(badFleet, []byte("fleet:\n  etcd: {endpoints: []}\n  lease_ttl: 1s\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"open beyond loopback", []string{"ui", "--listen", "0.0.0.0:7480", "--config", noFleet}, exitUsage, "--insecure-listen"},
		{"an agent config without a fleet", []string{"ui", "--config", noFleet}, exitConfig, "no fleet: block"},
		{"a fleet-only file, checked", []string{"ui", "--config", badFleet}, exitConfig, "fleet.lease_ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, stderr.String(), tc.want)
			}
		})
	}
}
