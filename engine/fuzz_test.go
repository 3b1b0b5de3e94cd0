package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"berth.dev/berth/envs"
)

const fuzzDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

// FuzzComposeToCreateRequest drives the whole path from a config repo's
// bytes to the Docker create request: envs.Load (containment, validation,
// policy) and then CreateRequest and JobRequest for what it accepts. It
// may refuse anything; it must never panic, hang, or hand Docker a
// request that breaks the trust model (DESIGN.md §7). Seeds: the hostile
// repositories of issue #11, and testdata/fuzz.
func FuzzComposeToCreateRequest(f *testing.F) {
	img := "r/app@" + fuzzDigest
	for _, seed := range []string{
		"services:\n  w:\n    image: " + img + "\n    deploy: {resources: {limits: {cpus: 'NaN'}}}\n",
		"services:\n  w:\n    image: " + img + "\n    cpus: .inf\n",
		"services:\n  w:\n    image: " + img + "\n    volumes: ['v:/host']\nvolumes:\n  v: {driver: local, driver_opts: {type: none, o: bind, device: /}}\n",
		"services:\n  w:\n    image: " + img + "\n    security_opt: [apparmor=unconfined, seccomp=unconfined, systempaths=unconfined, label=disable]\n",
		"services:\n  w:\n    image: " + img + "\n    network_mode: container:x\n    pid: container:x\n    ipc: container:x\n",
		"services:\n  w:\n    image: " + img + "\n    networks: [h]\nnetworks:\n  h: {external: true, name: host}\n",
		"services:\n  w:\n    image: " + img + "\n    networks: [m]\nnetworks:\n  m: {driver: macvlan, driver_opts: {parent: eth0}}\n",
		"services:\n  w:\n    image: " + img + "\n    volumes: ['x:/x']\nvolumes:\n  x: {external: true, name: other_data}\n",
		"services:\n  w:\n    image: " + img + "\n    logging: {driver: syslog, options: {syslog-address: 'tcp://192.0.2.1:514'}}\n",
		"services:\n  w:\n    image: " + img + "\n    labels: {berth.env: other, com.docker.compose.project: other}\n",
		"services:\n  w:\n    image: " + img + "\n    ports: ['1-65535:1-65535']\n",
		"services:\n  w:\n    image: " + img + "\n    volumes: ['./:/repo:rw', '/var/run/docker.sock:/s', '/:/h']\n",
		"services:\n  w:\n    image: " + img + "\n    x-berth: {secrets: {T: 'auth/token/lookup-self#id'}}\n",
		"include: [{path: inc.yaml, project_directory: ../..}]\nservices:\n  w: {image: " + img + ", env_file: ../../etc/passwd}\n",
		"services:\n  w: {image: " + img + ", extends: {file: /etc/passwd, service: x}}\n",
		"services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 8080}\nx-berth:\n  lb: {type: nginx, upstream: app, file: /etc/ssh/sshd_config.d/x.conf}\n  jobs:\n    j: {schedule: '@daily', service: web, environment: {A: b}}\n    k: {schedule: '@daily', image: " + img + "}\n",
		"services:\n  w:\n    image: " + img + "\n    sysctls: {kernel.core_pattern: '|/tmp/x'}\n    privileged: true\n    cap_add: [ALL]\n    devices: ['/dev/sda:/dev/sda']\n",
		// The later tricks: YAML shape, ulimits, stop grace, overlapping
		// binds, names of other projects, job bounds, a legacy LB file.
		"services:\n  w: {image: " + img + "}\nx-deep: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
		"services:\n  w: {image: " + img + "}\nx-a0: &a0 [x, x]\nx-a1: &a1 [*a0, *a0]\nx-a2: &a2 [*a1, *a1]\nx-a3: [*a2, *a2]\n---\nservices: {w: {privileged: true}}\n",
		"services:\n  w:\n    image: " + img + "\n    ulimits: {memlock: -1, nofile: {soft: 1, hard: 2000000000}}\n    stop_grace_period: 1000h\n",
		"services:\n  w:\n    image: " + img + "\n    volumes: ['/srv:/a', '/srv/x:/b:ro']\n    expose: ['1-65535']\n    networks: [n]\nnetworks:\n  n: {name: other_default}\n",
		"services:\n  w: {image: " + img + "}\nx-berth:\n  jobs:\n    a: {service: w, schedule: '@every 1s', history: 5000, concurrency: allow}\n    b: {service: w, schedule: '*/1 * * * * *', concurrency: allow, timeout: 1000h}\n",
		"services:\n  web:\n    image: " + img + "\n    x-berth: {role: server, port: 8080, lb: {type: nginx, upstream: a, file: /etc/nginx/conf.d/berth-a-b-c.conf}}\n",
	} {
		f.Add(seed, "")
	}
	f.Add("services:\n  w: {image: 'r/app@${D}', environment: {A: '${A:-x}'}}\n", "D="+fuzzDigest+"\nA=1\n")
	f.Fuzz(func(t *testing.T, compose, dotenv string) {
		dir := t.TempDir()
		envDir := filepath.Join(dir, "envs", "prod")
		if err := os.MkdirAll(envDir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(envDir, "compose.yaml"), []byte(compose), 0o644)
		os.WriteFile(filepath.Join(envDir, ".env"), []byte(dotenv), 0o644)
		done := make(chan struct{})
		go func() {
			defer close(done)
			env, err := envs.Load(t.Context(), dir, "prod", envs.Options{MaxFileSize: 64 << 10})
			if err != nil {
				return
			}
			for _, svc := range env.Services {
				req, err := CreateRequest(env.Project, svc, Placement{Project: "prod", Env: "prod", Revision: "r", ConfigHash: svc.Hash, PublishLoopback: svc.Berth.Role == envs.RoleServer})
				if err != nil {
					continue
				}
				checkRequest(t, dir, req)
			}
			for _, job := range env.Jobs {
				var svc *envs.Service
				if job.Service != "" {
					svc = env.Service(job.Service)
				}
				if req, err := JobRequest(env.Project, svc, job, JobPlacement{Project: "prod", Env: "prod", Revision: "r", Job: job.Name, Run: "1"}); err == nil {
					checkRequest(t, dir, req)
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("still running after 10s on compose %q", compose)
		}
	})
}

// checkRequest asserts what the default policy promises of any request
// built from an accepted revision.
func checkRequest(t *testing.T, repo string, req *Request) {
	t.Helper()
	h := req.Host
	if h.Privileged || len(h.CapAdd) > 0 || len(h.Devices) > 0 || h.PidMode.IsHost() || h.IpcMode.IsHost() || h.NetworkMode.IsHost() ||
		h.NetworkMode.IsContainer() || h.PidMode.IsContainer() || h.IpcMode.IsContainer() || len(h.SecurityOpt) > 0 && h.SecurityOpt[0] != "no-new-privileges" {
		t.Fatalf("a host privilege passed the default policy: %+v", h)
	}
	for _, m := range h.Mounts {
		if m.Type == "bind" {
			rel, err := filepath.Rel(repo, m.Source)
			if err != nil || rel == ".." || len(rel) > 2 && rel[:3] == "../" {
				t.Fatalf("bind mount of %s outside the repo passed the default policy", m.Source)
			}
			if !m.ReadOnly {
				t.Fatalf("repo mount %s is writable", m.Source)
			}
		}
	}
	for k := range req.Config.Labels {
		if len(k) > 6 && k[:6] == "berth." && !isManagedLabel(k) {
			t.Fatalf("a repo label %s passed", k)
		}
	}
}

func isManagedLabel(k string) bool {
	switch k {
	case LabelEnv, LabelService, LabelRole, LabelSlot, LabelConfigHash, LabelSpecHash, LabelRevision, LabelJobEnv, LabelJob, LabelRun:
		return true
	}
	return false
}
