package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(p, []byte(s), 0o600)
	return p
}

func TestLoadConfig_MinimalGetsDefaults(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "/var/lib/berth" || c.Repo.Branch != "main" || c.Repo.PollInterval.Duration != time.Minute || c.Nginx.PidFile != "/run/nginx.pid" {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestLoadConfig_StrictAndEveryProblemAtOnce(t *testing.T) {
	_, err := LoadConfig(writeConfig(t, "env: prod\nrepo: {url: x, brnch: main}\n"))
	if err == nil || !strings.Contains(err.Error(), "field brnch not found") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, "env: Prod!\nstate_dir: relative\nrepo: {poll_interval: 10ms}\n"))
	for _, want := range []string{"env: \"Prod!\"", "repo.url: required", "state_dir: \"relative\" must be an absolute path", "repo.poll_interval: at least 1s"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	_, err = LoadConfig(writeConfig(t, "env: prod\nrepo: {url: x}\npolicy: {allowed_host_ports: ['53', '80-70']}\n"))
	if err == nil || !strings.Contains(err.Error(), `policy.allowed_host_ports[1]: "80-70" is not a port or a range N-M`) {
		t.Errorf("bad host ports: %v", err)
	}
	_, err = LoadConfig(writeConfig(t, "env: prod\nrepo: {url: x, timeout: soon}\n"))
	if err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Errorf("bad duration: %v", err)
	}
}

func TestRun_CheckConfigExitCodes(t *testing.T) {
	good := writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/c.git}\n")
	bad := writeConfig(t, "env: prod\nrepo: {url: x, nope: 1}\n")
	var out, errOut strings.Builder
	if code := run(t.Context(), []string{"run", "--check-config", "--config", good}, &out, &errOut); code != exitOK || !strings.Contains(out.String(), good+": ok") {
		t.Fatalf("good config: exit %d, %q %q", code, out.String(), errOut.String())
	}
	errOut.Reset()
	if code := run(t.Context(), []string{"run", "--check-config", "--config", bad}, &out, &errOut); code != exitConfig || !strings.Contains(errOut.String(), "berth run: ") {
		t.Fatalf("bad config: exit %d, %q", code, errOut.String())
	}
}

func TestLoadConfig_SeveralEnvs(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "envs: [shop, blog]\nrepo: {url: https://git.example.org/c.git}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.EnvNames(); len(got) != 2 || got[0] != "shop" || got[1] != "blog" {
		t.Fatalf("EnvNames %v", got)
	}
	_, err = LoadConfig(writeConfig(t, "env: shop\nenvs: [blog, Blog, blog]\nproject: x\nrepo: {url: x}\n"))
	for _, want := range []string{"envs: set env: for one environment or envs: for several, not both", `envs[1]: "Blog"`, `envs[2]: "blog" is listed twice`, "project: names the Compose project of one environment"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestLoadConfig_FleetBlock(t *testing.T) {
	c, err := LoadConfig(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\n"))
	if err != nil || c.Fleet != nil {
		t.Fatalf("no fleet block: %+v, %v", c.Fleet, err)
	}
	c, err = LoadConfig(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\nfleet:\n  etcd: {endpoints: [https://etcd-1:2379]}\n  host: web-1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Fleet; f.Prefix != "/berth" || f.LeaseTTL != 15*time.Second || f.Host != "web-1" {
		t.Fatalf("fleet defaults not applied: %+v", f)
	}
	_, err = LoadConfig(writeConfig(t, "env: prod\nrepo: {url: https://git.example.org/ops/config.git}\nfleet:\n  etcd: {endpoints: [etcd-1], cert: /c.pem}\n  lease_ttl: 1s\n"))
	for _, want := range []string{"fleet.etcd.endpoints", "fleet.etcd.cert and fleet.etcd.key", "fleet.lease_ttl"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
