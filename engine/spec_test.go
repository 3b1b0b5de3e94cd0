package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"

	"berth.dev/berth/envs"
)

const digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// loadEnv writes compose (as envs/prod/compose.yaml) and loads it.
func loadEnv(t *testing.T, compose string) *envs.Env {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "envs/prod/conf"), 0o755)
	os.WriteFile(filepath.Join(dir, "envs/prod/compose.yaml"), []byte(compose), 0o644)
	os.WriteFile(filepath.Join(dir, "envs/prod/conf/app.ini"), []byte("a=1\n"), 0o644)
	env, err := envs.Load(context.Background(), dir, "prod", envs.Options{})
	var ps envs.Problems
	if errors.As(err, &ps) {
		t.Fatalf("problems:\n%v", ps)
	}
	if err != nil {
		t.Fatal(err)
	}
	return env
}

const richService = `
services:
  web:
    image: reg.example/app@` + digest + `
    command: ["serve", "--port", "8080"]
    entrypoint: ["/app"]
    environment: {B: "2", A: "1"}
    working_dir: /srv
    user: "1000:1000"
    labels: {team: core}
    expose: ["9090"]
    volumes:
      - data:/var/lib/app
      - ./conf/app.ini:/etc/app.ini:ro
      - type: tmpfs
        target: /tmp
        tmpfs: {size: 1048576}
    tmpfs: ["/run:size=64k"]
    networks: [back, front]
    healthcheck:
      test: ["CMD", "/app", "health"]
      interval: 2s
      timeout: 1s
      retries: 5
      start_period: 10s
    restart: on-failure:3
    stop_signal: SIGINT
    stop_grace_period: 20s
    init: true
    read_only: true
    extra_hosts: ["db.internal:10.0.0.5"]
    dns: [9.9.9.9]
    logging: {driver: json-file, options: {max-size: 10m}}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    deploy: {resources: {limits: {memory: 256M, cpus: "0.5", pids: 100}}}
    cap_drop: [ALL]
    security_opt: ["no-new-privileges:true"]
    shm_size: 32m
    sysctls: {net.core.somaxconn: "1024"}
    x-berth: {role: server, port: 8080}
volumes:
  data: {}
networks:
  back: {}
  front: {}
x-berth:
  lb: {type: nginx, upstream: app, file: /etc/nginx/conf.d/app.conf}
`

func TestCreateRequest_CoversTheSupportedComposeKeys(t *testing.T) {
	env := loadEnv(t, richService)
	svc := *env.Service("web")
	req, err := CreateRequest(env.Project, svc, Placement{
		Project: "prod", Env: "prod", Revision: "abc123", ConfigHash: "h1", Slot: 2,
		SecretEnv: []string{"DB_PASSWORD=x"}, PublishLoopback: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, h := req.Config, req.Host
	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s wrong:\nconfig %+v\nhost %+v", what, c, h)
		}
	}
	check("name", req.Name == "prod-web-2")
	check("image", c.Image == "reg.example/app@"+digest)
	check("command", slices.Equal(c.Cmd, []string{"serve", "--port", "8080"}) && slices.Equal(c.Entrypoint, []string{"/app"}))
	check("environment, sorted, secrets last", slices.Equal(c.Env, []string{"A=1", "B=2", "DB_PASSWORD=x"}))
	check("working_dir/user", c.WorkingDir == "/srv" && c.User == "1000:1000")
	check("labels", c.Labels["team"] == "core" && c.Labels[LabelEnv] == "prod" && c.Labels[LabelService] == "web" &&
		c.Labels[LabelRevision] == "abc123" && c.Labels[LabelConfigHash] == "h1" && c.Labels[LabelRole] == "server" &&
		c.Labels[LabelSlot] == "2" && c.Labels[composeProject] == "prod" && c.Labels[composeService] == "web" &&
		c.Labels[composeNumber] == "2" && c.Labels[composeOneOff] == "False")
	_, exposed := c.ExposedPorts["9090/tcp"]
	check("expose", exposed)
	check("loopback publish of x-berth.port", len(h.PortBindings["8080/tcp"]) == 1 && h.PortBindings["8080/tcp"][0] == nat.PortBinding{HostIP: "127.0.0.1"})
	check("healthcheck", c.Healthcheck != nil && slices.Equal(c.Healthcheck.Test, []string{"CMD", "/app", "health"}) &&
		c.Healthcheck.Interval == 2*time.Second && c.Healthcheck.Timeout == time.Second && c.Healthcheck.Retries == 5 && c.Healthcheck.StartPeriod == 10*time.Second)
	check("restart", h.RestartPolicy == container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 3})
	check("stop signal and grace", c.StopSignal == "SIGINT" && c.StopTimeout != nil && *c.StopTimeout == 20)
	check("init/read_only", h.Init != nil && *h.Init && h.ReadonlyRootfs)
	check("extra_hosts/dns", slices.Equal(h.ExtraHosts, []string{"db.internal:10.0.0.5"}) && slices.Equal(h.DNS, []string{"9.9.9.9"}))
	check("logging", h.LogConfig.Type == "json-file" && h.LogConfig.Config["max-size"] == "10m")
	check("limits", h.Memory == 256<<20 && h.NanoCPUs == 5e8 && h.PidsLimit != nil && *h.PidsLimit == 100)
	check("ulimits", len(h.Ulimits) == 2 && h.Ulimits[0].Name == "nofile" && h.Ulimits[0].Soft == 1024 && h.Ulimits[0].Hard == 2048 && h.Ulimits[1].Soft == 512)
	check("caps/security", slices.Equal(h.CapDrop, []string{"ALL"}) && slices.Equal(h.SecurityOpt, []string{"no-new-privileges:true"}))
	check("shm/sysctls", h.ShmSize == 32<<20 && h.Sysctls["net.core.somaxconn"] == "1024")
	check("tmpfs list", h.Tmpfs["/run"] == "size=64k")
	check("mounts", len(h.Mounts) == 3 &&
		h.Mounts[0] == mount.Mount{Type: mount.TypeVolume, Source: "prod_data", Target: "/var/lib/app"} &&
		h.Mounts[1].Type == mount.TypeBind && filepath.Base(h.Mounts[1].Source) == "app.ini" && h.Mounts[1].ReadOnly &&
		h.Mounts[2].Type == mount.TypeTmpfs && h.Mounts[2].TmpfsOptions.SizeBytes == 1<<20)
	check("networks: first at create, the rest after", h.NetworkMode == "prod_back" &&
		req.Network.EndpointsConfig["prod_back"] != nil && slices.Contains(req.Network.EndpointsConfig["prod_back"].Aliases, "web") &&
		req.MoreNetworks["prod_front"] != nil)
}

func TestCreateRequest_Defaults(t *testing.T) {
	env := loadEnv(t, "services:\n  w:\n    image: r/a@"+digest+"\n    healthcheck: {disable: true}\n")
	req, err := CreateRequest(env.Project, *env.Service("w"), Placement{Project: "prod", Env: "prod", Slot: 1, OneOff: true})
	if err != nil {
		t.Fatal(err)
	}
	if req.Host.NetworkMode != "prod_default" {
		t.Errorf("network mode %q, want the project's default network", req.Host.NetworkMode)
	}
	if req.Host.RestartPolicy.Name != container.RestartPolicyDisabled {
		t.Errorf("restart %+v, want no", req.Host.RestartPolicy)
	}
	if !slices.Equal(req.Config.Healthcheck.Test, []string{"NONE"}) {
		t.Errorf("healthcheck %+v, want disabled", req.Config.Healthcheck)
	}
	if req.Config.Labels[composeOneOff] != "True" || len(req.Host.PortBindings) != 0 {
		t.Errorf("one-off labels %v, ports %v", req.Config.Labels, req.Host.PortBindings)
	}
}

func TestCreateRequest_SecretFilesGetATmpfsAndStdinNeverEnvOrBinds(t *testing.T) {
	env := loadEnv(t, "services:\n  w:\n    image: r/a@"+digest+"\n")
	req, err := CreateRequest(env.Project, *env.Service("w"), Placement{Project: "prod", Env: "prod", Slot: 1, SecretFiles: []string{"db=v4lue=with=equals"}})
	if err != nil {
		t.Fatal(err)
	}
	if req.SecretFiles["db"] != "v4lue=with=equals" || !req.Config.OpenStdin || !req.Config.StdinOnce {
		t.Errorf("secret files %v, stdin %v/%v", req.SecretFiles, req.Config.OpenStdin, req.Config.StdinOnce)
	}
	var tmpfs bool
	for _, m := range req.Host.Mounts {
		tmpfs = tmpfs || (m.Target == "/run/secrets" && m.Type == "tmpfs" && m.TmpfsOptions.Mode == 0o1777)
	}
	if !tmpfs {
		t.Errorf("no tmpfs at /run/secrets: %+v", req.Host.Mounts)
	}
	for _, e := range req.Config.Env {
		if strings.Contains(e, "v4lue") {
			t.Errorf("a secret file value is in the environment: %s", e)
		}
	}
}
